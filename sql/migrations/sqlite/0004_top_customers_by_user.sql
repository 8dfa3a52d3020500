-- Completed orders by user, then time, covering the amount (integer cents here): top customers
-- reads its window from this index alone, already in user order.
create index orders_completed_user_id_idx
    on orders (user_id, created_at, total_amount)
    where status = 'completed';
