ALTER TABLE webhook_logs RESET (toast_tuple_target);
