-- RBCS schema: accounts, transactions (the idempotency record) and ledger
-- entries (the per-account history).  Safe to apply again: tables are
-- created only when missing, procedures are replaced.
--
-- Identifiers are ASCII compared byte for byte (ascii_bin): with MariaDB's
-- default collation 'ACC1' = 'acc1 ' would be true.  Money is DECIMAL(36,18),
-- the arithmetic is done by the server inside UPDATE statements.

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
    PRIMARY KEY (account_number),
    CONSTRAINT accounts_balance_not_negative CHECK (balance >= 0)
) ENGINE=InnoDB;

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

-- Who changed what, when, and how it ended: one row per state change
-- (an account opened, a transfer applied or rejected), written in the same
-- database transaction as the change itself.  actor is the API key id
-- (NULL when authentication is off).
CREATE TABLE IF NOT EXISTS audit_log (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at           DATETIME(3) NOT NULL,
    actor        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    action       ENUM('account.open', 'transfer') NOT NULL,
    subject      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    http_status  SMALLINT UNSIGNED NOT NULL,
    detail       VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    PRIMARY KEY (id),
    KEY audit_subject (subject),
    KEY audit_at (at)
) ENGINE=InnoDB;


DELIMITER //

-- The transaction resource as the module reads it (column order matters:
-- src/ngx_rbcs_transfer.h names the indexes).
CREATE OR REPLACE PROCEDURE rbcs_transaction_row(IN p_result VARCHAR(16),
    IN p_id VARCHAR(64))
BEGIN
    SELECT p_result, http_status, code, detail, transaction_id,
           source_account, destination_account, amount, amount_text,
           currency, scale, status, client_ts, created_at,
           source_balance, destination_balance, source_version,
           destination_version
      FROM transactions
     WHERE transaction_id = p_id;
END //

-- A transfer, judged on its own inside the caller's database transaction
-- (the module sends START TRANSACTION; CALL ...; COMMIT in one round trip).
--
-- p_int_digits, p_frac_digits and p_is_zero describe the amount's text,
-- which the module has already checked against the grammar; p_amount is its
-- value when it fits DECIMAL(36,18), else NULL.  The amount's scale is the
-- source account's, else the destination's, else the requested currency's;
-- when none is known only the grammar applies.
--
-- Check order (the contract's): 400 invalid_amount, 400 same_account,
-- replay / 409 transaction_id_conflict, 404 account_not_found,
-- 422 currency_mismatch, insufficient_funds, balance_overflow.
-- 400s are not recorded; everything after them is.
CREATE OR REPLACE PROCEDURE rbcs_transfer(
    IN p_id VARCHAR(64), IN p_src VARCHAR(64), IN p_dst VARCHAR(64),
    IN p_amount DECIMAL(36,18), IN p_amount_text VARCHAR(512),
    IN p_amount_key VARCHAR(512), IN p_int_digits INT, IN p_frac_digits INT,
    IN p_is_zero TINYINT, IN p_currency VARCHAR(12), IN p_currency_scale INT,
    IN p_client_ts BIGINT, IN p_actor VARCHAR(64))
proc: BEGIN
    DECLARE v_src_cur, v_dst_cur, v_cur VARCHAR(12) DEFAULT NULL;
    DECLARE v_src_scale, v_dst_scale, v_scale INT DEFAULT NULL;
    DECLARE v_src_bal, v_dst_bal DECIMAL(36,18) DEFAULT NULL;
    DECLARE v_src_ver, v_dst_ver BIGINT UNSIGNED DEFAULT NULL;
    DECLARE v_status SMALLINT UNSIGNED DEFAULT 201;
    DECLARE v_code, v_result VARCHAR(32) DEFAULT NULL;
    DECLARE v_detail VARCHAR(255) DEFAULT NULL;
    DECLARE v_fp VARCHAR(700);
    DECLARE v_old_fp VARCHAR(700) DEFAULT NULL;
    DECLARE v_old_cur, v_old_req_cur VARCHAR(12) DEFAULT NULL;
    DECLARE v_old_scale INT DEFAULT NULL;
    DECLARE v_dup INT DEFAULT 0;
    DECLARE v_now DATETIME(3) DEFAULT UTC_TIMESTAMP(3);
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE CONTINUE HANDLER FOR 1062 SET v_dup = 1;

    -- Lock both accounts in byte order, so that two transfers over the
    -- same pair never wait for each other crosswise.
    IF CAST(p_src AS BINARY) <= CAST(p_dst AS BINARY) THEN
        SELECT currency, scale, balance, version
          INTO v_src_cur, v_src_scale, v_src_bal, v_src_ver
          FROM accounts WHERE account_number = p_src FOR UPDATE;
        SELECT currency, scale, balance, version
          INTO v_dst_cur, v_dst_scale, v_dst_bal, v_dst_ver
          FROM accounts WHERE account_number = p_dst FOR UPDATE;
    ELSE
        SELECT currency, scale, balance, version
          INTO v_dst_cur, v_dst_scale, v_dst_bal, v_dst_ver
          FROM accounts WHERE account_number = p_dst FOR UPDATE;
        SELECT currency, scale, balance, version
          INTO v_src_cur, v_src_scale, v_src_bal, v_src_ver
          FROM accounts WHERE account_number = p_src FOR UPDATE;
    END IF;

    SET v_scale = COALESCE(v_src_scale, v_dst_scale, p_currency_scale);
    SET v_fp = CONCAT(p_src, '|', p_dst, '|', p_amount_key);

    SELECT fingerprint, currency, request_currency, scale
      INTO v_old_fp, v_old_cur, v_old_req_cur, v_old_scale
      FROM transactions WHERE transaction_id = p_id;

    -- A reported outcome never changes: a rejection recorded while no
    -- account (so no scale) was known is replayed as recorded, even though
    -- its amount would now be checked against the scale of an account
    -- opened since.
    IF v_old_fp IS NOT NULL AND v_old_scale IS NULL
       AND CAST(v_old_fp AS BINARY) = CAST(v_fp AS BINARY)
       AND CAST(COALESCE(p_currency, v_old_cur) AS BINARY)
           <=> CAST(COALESCE(v_old_req_cur, v_old_cur) AS BINARY)
    THEN
        CALL rbcs_transaction_row('replay', p_id);
        LEAVE proc;
    END IF;

    IF v_scale IS NOT NULL
       AND (p_int_digits > 18 OR p_frac_digits > v_scale OR p_is_zero <> 0
            OR p_amount IS NULL)
    THEN
        SELECT 'invalid', 400, 'invalid_amount',
               CONCAT('amount must be a positive decimal with at most ',
                      v_scale, ' fractional digits');
        LEAVE proc;
    END IF;

    IF CAST(p_src AS BINARY) = CAST(p_dst AS BINARY) THEN
        SELECT 'invalid', 400, 'same_account',
               'source and destination accounts must differ';
        LEAVE proc;
    END IF;

    IF v_old_fp IS NULL THEN
        SET v_cur = COALESCE(v_src_cur, v_dst_cur, p_currency);

        IF v_src_cur IS NULL THEN
            SET v_status = 404, v_code = 'account_not_found',
                v_detail = CONCAT('account ', p_src, ' does not exist');
        ELSEIF v_dst_cur IS NULL THEN
            SET v_status = 404, v_code = 'account_not_found',
                v_detail = CONCAT('account ', p_dst, ' does not exist');
        ELSEIF CAST(v_src_cur AS BINARY) <> CAST(v_dst_cur AS BINARY)
               OR (p_currency IS NOT NULL
                   AND CAST(p_currency AS BINARY) <> CAST(v_src_cur AS BINARY))
        THEN
            SET v_status = 422, v_code = 'currency_mismatch',
                v_detail = 'the accounts and the transfer must have one currency';
        ELSEIF v_src_bal < p_amount THEN
            SET v_status = 422, v_code = 'insufficient_funds',
                v_detail = CONCAT('account ', p_src,
                                  ' has insufficient funds');
        ELSEIF v_dst_bal > 999999999999999999.999999999999999999 - p_amount
        THEN
            SET v_status = 422, v_code = 'balance_overflow',
                v_detail = CONCAT('the credit would take account ', p_dst,
                                  ' beyond the largest balance');
        END IF;

        -- The balances and versions the transfer leaves, for its record:
        -- the rows are locked, so they are what the UPDATEs below make.
        IF v_code IS NULL THEN
            SET v_src_bal = v_src_bal - p_amount,
                v_dst_bal = v_dst_bal + p_amount,
                v_src_ver = v_src_ver + 1,
                v_dst_ver = v_dst_ver + 1;
        ELSE
            SET v_src_bal = NULL, v_dst_bal = NULL, v_src_ver = NULL,
                v_dst_ver = NULL;
        END IF;

        INSERT INTO transactions (transaction_id, source_account,
            destination_account, amount, amount_text, fingerprint, currency,
            request_currency, scale, status, http_status, code, detail,
            client_ts, source_balance, destination_balance, source_version,
            destination_version, created_at)
        VALUES (p_id, p_src, p_dst,
            IF(v_scale IS NULL, NULL, p_amount), p_amount_text, v_fp, v_cur,
            p_currency, v_scale,
            IF(v_code IS NULL, 'COMPLETED', 'REJECTED'), v_status, v_code,
            v_detail, p_client_ts, v_src_bal, v_dst_bal, v_src_ver,
            v_dst_ver, v_now);

        IF v_dup = 0 THEN
            INSERT INTO audit_log (at, actor, action, subject, outcome,
                http_status, detail)
            VALUES (v_now, p_actor, 'transfer', p_id,
                    COALESCE(v_code, 'completed'), v_status,
                    COALESCE(v_detail, CONCAT(p_amount_text, ' ', v_cur,
                             ' from ', p_src, ' to ', p_dst)));

            IF v_code IS NULL THEN
                -- The guarded debit: the server does the arithmetic and
                -- refuses to go below zero whatever was read above.
                UPDATE accounts
                   SET balance = balance - p_amount, version = version + 1,
                       updated_at = v_now
                 WHERE account_number = p_src AND balance >= p_amount;
                IF ROW_COUNT() <> 1 THEN
                    SIGNAL SQLSTATE '45000'
                        SET MESSAGE_TEXT = 'rbcs: guarded debit failed';
                END IF;
                UPDATE accounts
                   SET balance = balance + p_amount, version = version + 1,
                       updated_at = v_now
                 WHERE account_number = p_dst;

                INSERT INTO entries (account_number, version, type,
                    transaction_id, counterparty, amount, balance_after,
                    created_at)
                VALUES (p_src, v_src_ver, 'TRANSFER', p_id, p_dst, -p_amount,
                        v_src_bal, v_now),
                       (p_dst, v_dst_ver, 'TRANSFER', p_id, p_src, p_amount,
                        v_dst_bal, v_now);
            END IF;

            -- the row just recorded, as rbcs_transaction_row() gives it
            SELECT 'created', v_status, v_code, v_detail, p_id, p_src, p_dst,
                   IF(v_scale IS NULL, NULL, p_amount), p_amount_text, v_cur,
                   v_scale, IF(v_code IS NULL, 'COMPLETED', 'REJECTED'),
                   p_client_ts, v_now, v_src_bal, v_dst_bal, v_src_ver,
                   v_dst_ver;
            LEAVE proc;
        END IF;

        -- Another request with this id committed while this one waited
        -- for the key: judge against what it recorded.
        SELECT fingerprint, currency, request_currency
          INTO v_old_fp, v_old_cur, v_old_req_cur
          FROM transactions WHERE transaction_id = p_id;
    END IF;

    -- A replay must name the same accounts and amount (by value) and the
    -- same currency, an omitted currency standing for the accounts' one.
    IF CAST(v_old_fp AS BINARY) = CAST(v_fp AS BINARY)
       AND CAST(COALESCE(p_currency, v_old_cur) AS BINARY)
           <=> CAST(COALESCE(v_old_req_cur, v_old_cur) AS BINARY)
    THEN
        CALL rbcs_transaction_row('replay', p_id);
    ELSE
        SELECT 'conflict', 409, 'transaction_id_conflict',
               'the transaction id was already used with other fields';
    END IF;
END //

-- Open an account, idempotently: a repeat with the same currency and
-- initial balance answers the current account, another one conflicts.
CREATE OR REPLACE PROCEDURE rbcs_open_account(IN p_num VARCHAR(64),
    IN p_currency VARCHAR(12), IN p_scale INT, IN p_initial DECIMAL(36,18),
    IN p_actor VARCHAR(64))
BEGIN
    DECLARE v_dup INT DEFAULT 0;
    DECLARE v_result VARCHAR(16) DEFAULT 'created';
    DECLARE v_now DATETIME(3) DEFAULT UTC_TIMESTAMP(3);
    DECLARE CONTINUE HANDLER FOR 1062 SET v_dup = 1;

    INSERT INTO accounts (account_number, currency, scale, balance,
        initial_balance, version, created_at, updated_at)
    VALUES (p_num, p_currency, p_scale, p_initial, p_initial, 1, v_now,
            v_now);

    IF v_dup = 0 THEN
        INSERT INTO entries (account_number, version, type, transaction_id,
            counterparty, amount, balance_after, created_at)
        VALUES (p_num, 1, 'OPENING', NULL, NULL, p_initial, p_initial, v_now);
        INSERT INTO audit_log (at, actor, action, subject, outcome,
            http_status, detail)
        VALUES (v_now, p_actor, 'account.open', p_num, 'created', 201,
                CONCAT(p_currency, ' initial balance ', p_initial));
    ELSEIF EXISTS (SELECT 1 FROM accounts
                    WHERE account_number = p_num
                      AND CAST(currency AS BINARY) = CAST(p_currency AS BINARY)
                      AND initial_balance = p_initial)
    THEN
        SET v_result = 'existing';
    ELSE
        SET v_result = 'conflict';
    END IF;

    SELECT v_result, account_number, currency, scale, balance, version,
           created_at, updated_at
      FROM accounts WHERE account_number = p_num;
END //

DELIMITER ;
