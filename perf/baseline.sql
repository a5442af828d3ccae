-- perf/baseline.sql - the write baseline the project is judged against:
-- what a careful team would build without RBCS, one lean stored procedure
-- per transfer (one round trip, one transaction), in a database of its own
-- beside the project's, on the same server and settings.
--
--   perf/gen-accounts.sh --baseline 10000     # applies this file to
--                                             # rbcs_baseline, then accounts
--   build/perf/dbclient --mode lean -t 32 -d 10 -m uniform -n 10000
--
-- Applied as root with the database selected (mariadb rbcs_baseline <
-- perf/baseline.sql); safe to apply again: tables are created only when
-- missing, the procedure is replaced.  Leaner than the project's schema on
-- purpose: no history entries, no audit rows, no replay or conflict checks.

-- identifiers compared byte for byte, as in conf/schema.sql
ALTER DATABASE CHARACTER SET ascii COLLATE ascii_bin;

CREATE TABLE IF NOT EXISTS accounts (
    account_number   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    currency         VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    balance          DECIMAL(36,18) NOT NULL,
    initial_balance  DECIMAL(36,18) NOT NULL,
    version          BIGINT UNSIGNED NOT NULL,
    created_at       DATETIME(3) NOT NULL,
    updated_at       DATETIME(3) NOT NULL,
    PRIMARY KEY (account_number),
    CONSTRAINT accounts_balance_not_negative CHECK (balance >= 0)
) ENGINE=InnoDB;

-- the primary key is the idempotency key; the two secondary keys serve
-- account statements
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    source_account       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    destination_account  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount               DECIMAL(36,18) NOT NULL,
    request_currency     VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NULL,
    client_ts            BIGINT NULL,
    currency             VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NULL,
    status               ENUM('PENDING', 'COMPLETED', 'REJECTED') NOT NULL,
    code                 VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    http_status          SMALLINT UNSIGNED NULL,
    source_balance       DECIMAL(36,18) NULL,
    destination_balance  DECIMAL(36,18) NULL,
    created_at           DATETIME(3) NOT NULL,
    PRIMARY KEY (transaction_id),
    KEY transactions_source (source_account, created_at),
    KEY transactions_destination (destination_account, created_at)
) ENGINE=InnoDB;

DROP PROCEDURE IF EXISTS lean_transfer;

DELIMITER //

-- One transfer, one transaction, one round trip: the caller sends
--   CALL lean_transfer('<id>','<source>','<destination>',<amount>,NULL,NULL)
-- with autocommit on and gets one row: status, http_status, code and the
-- two resulting balances (NULL when rejected).
CREATE PROCEDURE lean_transfer(
    IN p_id           VARCHAR(64),
    IN p_source       VARCHAR(64),
    IN p_destination  VARCHAR(64),
    IN p_amount       DECIMAL(36,18),
    IN p_currency     VARCHAR(12),
    IN p_client_ts    BIGINT)
BEGIN
    DECLARE v_now       DATETIME(3) DEFAULT UTC_TIMESTAMP(3);
    DECLARE v_src_cur   VARCHAR(12) DEFAULT NULL;
    DECLARE v_dst_cur   VARCHAR(12) DEFAULT NULL;
    DECLARE v_src_bal   DECIMAL(36,18) DEFAULT NULL;
    DECLARE v_dst_bal   DECIMAL(36,18) DEFAULT NULL;
    DECLARE v_status    VARCHAR(9) DEFAULT 'COMPLETED';
    DECLARE v_http      SMALLINT UNSIGNED DEFAULT 201;
    DECLARE v_code      VARCHAR(32) DEFAULT NULL;

    -- a missing account leaves its variables NULL: decided below
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;

    -- nothing half done survives an error (a lock wait timeout rolls back
    -- only its statement); the caller sees the error and may retry
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;

    START TRANSACTION;

    INSERT INTO transactions (transaction_id, source_account,
                              destination_account, amount, request_currency,
                              client_ts, status, created_at)
    VALUES (p_id, p_source, p_destination, p_amount, p_currency,
            p_client_ts, 'PENDING', v_now);

    -- both rows locked in byte order of their numbers, so that two
    -- transfers between the same accounts never wait for each other
    -- crosswise
    IF BINARY p_source < BINARY p_destination THEN
        SELECT currency, balance INTO v_src_cur, v_src_bal
          FROM accounts WHERE account_number = p_source FOR UPDATE;
        SELECT currency, balance INTO v_dst_cur, v_dst_bal
          FROM accounts WHERE account_number = p_destination FOR UPDATE;
    ELSE
        SELECT currency, balance INTO v_dst_cur, v_dst_bal
          FROM accounts WHERE account_number = p_destination FOR UPDATE;
        SELECT currency, balance INTO v_src_cur, v_src_bal
          FROM accounts WHERE account_number = p_source FOR UPDATE;
    END IF;

    IF v_src_cur IS NULL OR v_dst_cur IS NULL THEN
        SET v_status = 'REJECTED', v_http = 404, v_code = 'account_not_found';

    ELSEIF v_src_cur <> v_dst_cur
           OR (p_currency IS NOT NULL AND p_currency <> v_src_cur)
    THEN
        SET v_status = 'REJECTED', v_http = 422, v_code = 'currency_mismatch';

    ELSEIF v_src_bal < p_amount THEN
        SET v_status = 'REJECTED', v_http = 422, v_code = 'insufficient_funds';
    END IF;

    IF v_status = 'COMPLETED' THEN
        UPDATE accounts
           SET balance = balance - p_amount, version = version + 1,
               updated_at = v_now
         WHERE account_number = p_source;

        UPDATE accounts
           SET balance = balance + p_amount, version = version + 1,
               updated_at = v_now
         WHERE account_number = p_destination;

        -- the rows are locked: what was read is what the updates changed
        SET v_src_bal = v_src_bal - p_amount,
            v_dst_bal = v_dst_bal + p_amount;

        UPDATE transactions
           SET status = 'COMPLETED', http_status = 201, currency = v_src_cur,
               source_balance = v_src_bal, destination_balance = v_dst_bal
         WHERE transaction_id = p_id;
    ELSE
        SET v_src_bal = NULL, v_dst_bal = NULL;

        UPDATE transactions
           SET status = 'REJECTED', http_status = v_http, code = v_code,
               currency = COALESCE(v_src_cur, v_dst_cur, p_currency)
         WHERE transaction_id = p_id;
    END IF;

    COMMIT;

    SELECT v_status AS status, v_http AS http_status, v_code AS code,
           v_src_bal AS source_balance, v_dst_bal AS destination_balance;
END //

DELIMITER ;
