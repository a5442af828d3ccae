-- RBCS grants: what the service's database user may do, table by table,
-- and nothing more.  The privileges belong to the role rbcs_service; the
-- user the service logs in as ('rbcs'@'127.0.0.1' on the local stacks,
-- 'rbcs'@'%' in a pod network) is made where it is made and given the role
-- as its default role:
--
--   GRANT rbcs_service TO 'rbcs'@'%';
--   SET DEFAULT ROLE rbcs_service FOR 'rbcs'@'%';    -- MySQL 8: ... TO ...
--
-- Applied by an administrator (root over the unix socket locally; the
-- image's root in k8s/ and docker/), after conf/schema.sql (a table must
-- exist to be granted on), with the service's database as the default
-- database: mariadb rbcs < conf/grants.sql.  Safe to apply again; a
-- privilege dropped from this list must also be revoked by hand.
--
-- Table-level grants only: MariaDB has no deny, so a grant on the database
-- would reach the audit log too.  Schema changes (CREATE, ALTER, DROP,
-- INDEX, TRIGGER ...) are the administrator's, never the service's.  The
-- statements below are all the module sends (src/*.c); a session variable
-- (SET SESSION ...), a compound statement (BEGIN NOT ATOMIC ... END) and
-- SIGNAL need no privilege.

CREATE ROLE IF NOT EXISTS rbcs_service;

-- reads (account, balance, balance at a time); round trip 1 of a write
-- batch locks the rows (SELECT ... FOR UPDATE); opening inserts; each batch
-- ends in one UPDATE of balances, versions, holds and limits
GRANT SELECT, INSERT, UPDATE ON accounts TO rbcs_service;

-- the idempotency record: read by GET /accounts/transactions/{id} and, locked,
-- by round trip 1; one row inserted per outcome; a capture, void or expiry
-- UPDATEs its hold's row
GRANT SELECT, INSERT, UPDATE ON transactions TO rbcs_service;

-- the pending holds: listed, scanned for expiry, inserted with a hold and
-- deleted with its resolution (no UPDATE: a row never changes)
GRANT SELECT, INSERT, DELETE ON holds TO rbcs_service;

-- the history: appended, read by history and ?at=; never changed
GRANT SELECT, INSERT ON entries TO rbcs_service;

-- who changed what: appended in the transaction of the change, never read
-- by the service, never changed nor deleted by it
GRANT INSERT ON audit_log TO rbcs_service;

-- the cache generation: polled (COUNT, SUM) and moved on with INSERT ...
-- ON DUPLICATE KEY UPDATE
GRANT SELECT, INSERT, UPDATE ON cache_generation TO rbcs_service;
