-- payrail shard schema, version 5: refunds accepted while their capture settles (issue 11).
--
-- A refund asked for while the payment is CAPTURE_REQUESTED is kept AWAITING_CAPTURE: its
-- amount is reserved in refund_pending_amount against what the capture asked for, and the
-- settlement worker hands it to the refund worker in the transaction that records the
-- capture (or CANCELS it, releasing the reservation, when the capture fails for good).
-- request_event_id is the id of the refund's payment.refund-requested, drawn when the
-- refund was accepted, so the settlement worker draws no id inside its transaction.
-- The last line of defence follows: while a capture settles, refunds are bounded by the
-- amount it asked for; in every other state by what the PG captured.
ALTER TABLE payment DROP CONSTRAINT IF EXISTS ck_payment_amounts;

ALTER TABLE payment ADD CONSTRAINT ck_payment_amounts CHECK (
  amount > 0
  AND captured_amount >= 0 AND captured_amount <= amount
  AND capture_requested_amount >= 0 AND capture_requested_amount <= amount
  AND refunded_amount >= 0 AND refund_pending_amount >= 0
  AND refunded_amount + refund_pending_amount
      <= IF(status = 'CAPTURE_REQUESTED', capture_requested_amount, captured_amount)
);

ALTER TABLE refund ADD COLUMN IF NOT EXISTS request_event_id BIGINT NULL;
