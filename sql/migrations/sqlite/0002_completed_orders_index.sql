-- The lesson's partial index for revenue analytics: completed orders by time, covering the
-- columns the top-customers aggregate reads.
create index orders_completed_created_at_idx
    on orders (created_at desc, user_id, total_amount)
    where status = 'completed';
