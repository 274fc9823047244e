-- Test ground truth: every row version ever written to a hot table, kept in audit.<table> by triggers.
-- The flusher never touches this schema; a test compares audit with hot + lake to prove exactly-once.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE OR REPLACE FUNCTION audit.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    EXECUTE format('DELETE FROM audit.%I a WHERE ROW(a.*) IS NOT DISTINCT FROM ROW(($1).*)', TG_TABLE_NAME) USING OLD;
  END IF;
  EXECUTE format('INSERT INTO audit.%I SELECT ($1).*', TG_TABLE_NAME) USING NEW;
  RETURN NULL;
END $$;
