-- The lesson's partial index for revenue analytics: completed orders by time, covering the
-- columns the top-customers aggregate reads, so the window is an index-only range scan.
create index orders_completed_created_at_idx
    on orders (created_at desc, user_id)
    include (total_amount)
    where status = 'completed';
