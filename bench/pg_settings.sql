-- Memory and checkpoint settings of docs/scaling.md for this 24 GB benchmark machine; the
-- benchmarks print what the server runs with (bench/pg_settings.py). Restart to apply.
ALTER SYSTEM SET shared_buffers = '4GB';
ALTER SYSTEM SET effective_cache_size = '16GB';
ALTER SYSTEM SET maintenance_work_mem = '1GB';
ALTER SYSTEM SET max_wal_size = '16GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
