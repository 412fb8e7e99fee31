-- A forensic row is written once, on the ingest path, and read only when someone
-- investigates. With a ~2 KB webhook body the row passed Postgres's 2 KB TOAST
-- threshold, so every insert compressed the body with pglz while the provider
-- waited for its acknowledgement. Rows up to ~8 KB now stay inline, uncompressed:
-- per 20,000 events the forensic INSERTs took 452-478 ms instead of 752-808 ms
-- (docs/performance.md), for about twice the disk of a compressed JSON body.
-- Larger bodies are still compressed and moved out of line. To trade the CPU back
-- for disk: ALTER TABLE webhook_logs RESET (toast_tuple_target).
ALTER TABLE webhook_logs SET (toast_tuple_target = 8160);
