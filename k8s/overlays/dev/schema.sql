-- RBCS schema: accounts, transactions (the idempotency record), ledger
-- entries (the per-account history) and the audit log.  Safe to apply
-- again: tables are created only when missing.
--
-- Identifiers are ASCII compared byte for byte (ascii_bin): with MariaDB's
-- default collation 'ACC1' = 'acc1 ' would be true.  Money is DECIMAL(36,18).
-- The module judges every change (src/ngx_rbcs_ledger.c); the schema keeps
-- the backstops that hold whatever it decided: a STANDARD account's
-- available balance never below minus its overdraft limit (CHECK), an id
-- recorded once, one history entry per account version (primary keys), and
-- the server doing the arithmetic of each net update.

ALTER DATABASE CHARACTER SET ascii COLLATE ascii_bin;

CREATE TABLE IF NOT EXISTS accounts (
    account_number   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    currency         VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    scale            TINYINT UNSIGNED NOT NULL,
    balance          DECIMAL(36,18) NOT NULL,
    initial_balance  DECIMAL(36,18) NOT NULL,
    version          BIGINT UNSIGNED NOT NULL,
    created_at       DATETIME(3) NOT NULL,
    updated_at       DATETIME(3) NOT NULL,
    PRIMARY KEY (account_number)
) ENGINE=InnoDB;

-- Account kinds and overdraft limits (added to tables created before them).
-- kind: EXTERNAL accounts stand for money outside the ledger, with no floor.
-- overdraft_limit: a STANDARD account's available balance (balance minus
-- held_balance, the sum of its pending holds) never goes below minus it.
-- opening_limit: the limit given at opening, which a repeated opening is
-- compared with.  overdraft_excess: how far below its limit an account was
-- left when the limit was lowered under what it used; it only shrinks, as
-- credits arrive, so the CHECK below holds the floor at the old use and no
-- lower.
ALTER TABLE accounts
    ADD COLUMN IF NOT EXISTS kind ENUM('STANDARD', 'EXTERNAL') NOT NULL
        DEFAULT 'STANDARD' AFTER scale,
    ADD COLUMN IF NOT EXISTS overdraft_limit DECIMAL(36,18) NOT NULL
        DEFAULT 0 AFTER initial_balance,
    ADD COLUMN IF NOT EXISTS opening_limit DECIMAL(36,18) NOT NULL
        DEFAULT 0 AFTER overdraft_limit,
    ADD COLUMN IF NOT EXISTS held_balance DECIMAL(36,18) NOT NULL
        DEFAULT 0 AFTER opening_limit,
    ADD COLUMN IF NOT EXISTS overdraft_excess DECIMAL(36,18) NOT NULL
        DEFAULT 0 AFTER held_balance,
    DROP CONSTRAINT IF EXISTS accounts_balance_not_negative;

ALTER TABLE accounts
    ADD CONSTRAINT IF NOT EXISTS accounts_within_limit CHECK (
        kind = 'EXTERNAL'
        OR balance - held_balance >= -(overdraft_limit + overdraft_excess)),
    ADD CONSTRAINT IF NOT EXISTS accounts_limits_not_negative CHECK (
        overdraft_limit >= 0 AND opening_limit >= 0 AND held_balance >= 0
        AND overdraft_excess >= 0);

-- One row per transaction id, whatever the outcome: completed transfers and
-- recorded business rejections (404/422).  The id is the idempotency key;
-- fingerprint and the currency columns tell a replay from a conflicting
-- reuse of the id.
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    source_account       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    destination_account  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount               DECIMAL(36,18) NULL,
    amount_text          VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint          VARCHAR(700) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    currency             VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NULL,
    request_currency     VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NULL,
    scale                TINYINT UNSIGNED NULL,
    status               ENUM('COMPLETED', 'REJECTED') NOT NULL,
    http_status          SMALLINT UNSIGNED NOT NULL,
    code                 VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    detail               VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    client_ts            BIGINT NULL,
    source_balance       DECIMAL(36,18) NULL,
    destination_balance  DECIMAL(36,18) NULL,
    source_version       BIGINT UNSIGNED NULL,
    destination_version  BIGINT UNSIGNED NULL,
    created_at           DATETIME(3) NOT NULL,
    PRIMARY KEY (transaction_id)
) ENGINE=InnoDB;

-- Holds (two-phase transfers).  A hold is a transactions row with hold = 1:
-- status PENDING while it reserves its amount (the source's held_balance),
-- then COMPLETED (captured: captured_amount moved, destination_balance and
-- destination_version those of the capture), VOIDED or EXPIRED;
-- resolved_at says when.  source_balance, source_version and
-- source_available are the source's state the hold left (a repeat of the
-- hold's request answers them), resolved_source_* the state its resolution
-- left.
ALTER TABLE transactions
    MODIFY status ENUM('COMPLETED', 'REJECTED', 'PENDING', 'VOIDED',
                       'EXPIRED') NOT NULL,
    ADD COLUMN IF NOT EXISTS hold TINYINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS expires_at DATETIME(3) NULL,
    ADD COLUMN IF NOT EXISTS captured_amount DECIMAL(36,18) NULL,
    ADD COLUMN IF NOT EXISTS source_available DECIMAL(36,18) NULL,
    ADD COLUMN IF NOT EXISTS resolved_at DATETIME(3) NULL,
    ADD COLUMN IF NOT EXISTS resolved_source_balance DECIMAL(36,18) NULL,
    ADD COLUMN IF NOT EXISTS resolved_source_version BIGINT UNSIGNED NULL,
    ADD COLUMN IF NOT EXISTS resolved_source_available DECIMAL(36,18) NULL;

-- Backstop: a hold is never captured above its amount, nor for nothing.
ALTER TABLE transactions
    ADD CONSTRAINT IF NOT EXISTS transactions_capture_within_hold CHECK (
        captured_amount IS NULL
        OR (hold = 1 AND captured_amount > 0 AND captured_amount <= amount));

-- The pending holds, and only those: a row is written with the hold and
-- deleted with its resolution, in the same database transaction.  It serves
-- the listing of an account's holds and the expiry scan, so that neither
-- touches the transactions table's indexes.
CREATE TABLE IF NOT EXISTS holds (
    transaction_id       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    source_account       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    destination_account  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount               DECIMAL(36,18) NOT NULL,
    scale                TINYINT UNSIGNED NOT NULL,
    expires_at           DATETIME(3) NULL,
    created_at           DATETIME(3) NOT NULL,
    PRIMARY KEY (transaction_id),
    KEY holds_expiry (expires_at),
    KEY holds_source (source_account, created_at, transaction_id),
    KEY holds_destination (destination_account, created_at, transaction_id)
) ENGINE=InnoDB;

-- The history: one entry per balance change, keyed by the account's version
-- after the change, so pages are walked by version (a stable cursor).
CREATE TABLE IF NOT EXISTS entries (
    account_number  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version         BIGINT UNSIGNED NOT NULL,
    type            ENUM('OPENING', 'TRANSFER') NOT NULL,
    transaction_id  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    counterparty    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    amount          DECIMAL(37,18) NOT NULL,
    balance_after   DECIMAL(36,18) NOT NULL,
    created_at      DATETIME(3) NOT NULL,
    PRIMARY KEY (account_number, version)
) ENGINE=InnoDB;

-- The balance at a time (GET /accounts/{n}/balance?at=) finds an account's
-- last entry at or before an instant through this key; a batch's time is
-- never before the last change of an account it locks, so created_at
-- grows with version.
ALTER TABLE entries ADD KEY IF NOT EXISTS entries_at (account_number, created_at);

-- Who changed what, when, and how it ended: one row per state change
-- (an account opened, a transfer applied or rejected), written in the same
-- database transaction as the change itself.  actor is the API key id
-- (NULL when authentication is off).
CREATE TABLE IF NOT EXISTS audit_log (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at           DATETIME(3) NOT NULL,
    actor        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    action       ENUM('account.open', 'transfer', 'account.limit', 'hold',
                      'hold.capture', 'hold.void', 'hold.expire') NOT NULL,
    subject      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    http_status  SMALLINT UNSIGNED NOT NULL,
    detail       VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    PRIMARY KEY (id),
    KEY audit_subject (subject),
    KEY audit_at (at)
) ENGINE=InnoDB;

ALTER TABLE audit_log MODIFY action
    ENUM('account.open', 'transfer', 'account.limit', 'hold', 'hold.capture',
         'hold.void', 'hold.expire') NOT NULL;

-- The cache generation.  A pod tells the others about each committed
-- balance through Redis; when it could not (Redis away, a publish lost), it
-- moves its own row on, in the same transaction as the change when it knew
-- beforehand.  Every pod reads COUNT and SUM of this table once a second
-- and stops trusting the balances it cached before it saw them move
-- (docs/architecture.md, "Cache trust").  One row per nginx worker that
-- ever failed to publish: "<host>/<worker>".
CREATE TABLE IF NOT EXISTS cache_generation (
    publisher   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    generation  BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (publisher)
) ENGINE=InnoDB;


-- Earlier versions judged transfers in stored procedures; the module's
-- write path does it now (src/ngx_rbcs_ledger.c), in two round trips per
-- batch of operations.
DROP PROCEDURE IF EXISTS rbcs_transaction_row;
DROP PROCEDURE IF EXISTS rbcs_transfer;
DROP PROCEDURE IF EXISTS rbcs_open_account;
