-- The scheduler evaluates each strategy config in its own subtransaction: a config whose
-- evaluation fails (e.g. bars the engine refuses) is rolled back and skipped for that cycle,
-- its error kept here, and cleared by its next successful evaluation.
ALTER TABLE tapeflow.strategy_configs
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS last_error_at timestamptz;
COMMENT ON COLUMN tapeflow.strategy_configs.last_error IS 'Error of the last evaluation by run_cycle, NULL once one succeeds.';
COMMENT ON COLUMN tapeflow.strategy_configs.last_error_at IS 'When last_error was recorded.';

-- Recording or clearing that error is not a configuration change: no validation, and
-- updated_at keeps the time of the last change.
CREATE OR REPLACE FUNCTION tapeflow.strategy_configs_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.last_error, NEW.last_error_at) IS DISTINCT FROM (OLD.last_error, OLD.last_error_at)
       AND to_jsonb(NEW) - 'last_error' - 'last_error_at' = to_jsonb(OLD) - 'last_error' - 'last_error_at' THEN
        RETURN NEW;
    END IF;
    PERFORM tapeflow.validate_params(NEW.params);
    NEW.updated_at := now();
    RETURN NEW;
END $$;
