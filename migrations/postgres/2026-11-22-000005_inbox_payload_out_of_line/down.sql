ALTER TABLE webhook_events ALTER COLUMN payload SET STORAGE EXTENDED;
ALTER TABLE webhook_events RESET (toast_tuple_target, fillfactor);
