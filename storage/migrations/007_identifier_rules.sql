-- Which identifier rules (phone region, role accounts, provider rules, free-mail domains, blocklist) the core
-- log's normalized values and is_blocked verdicts follow. A process whose rules differ marks the data dirty; a
-- rebuild then re-classifies every identifier row from its raw value and records the rules it used.
-- Existing databases start dirty: their rows were normalized before libphonenumber and the provider rules.
ALTER TABLE resolver_state
  ADD COLUMN identifier_rules text NOT NULL DEFAULT '',
  ADD COLUMN identifier_rules_dirty boolean NOT NULL DEFAULT true;
