-- Running totals of deals per stage, owner and currency, kept by statement-level triggers on
-- deals, so the pipeline board's column counts, totals and weighted figures read a few hundred
-- rows instead of every deal (an aggregate over 200,000 deals costs ~200 ms; this, ~1 ms).
-- The owner is part of the key so a role's scope (own, team) filters the totals like the deals.
--
-- The weighted figure depends on the stage's probability, which admins change: deals without a
-- probability of their own are summed as plain amounts (weighted by the stage's probability when
-- read), deals with one as amount x probability. weighted = (amount_x_probability +
-- stage_weighted_amount x stages.probability) / 100, the same exact numeric as summing per deal.
CREATE TABLE deal_totals (
    stage_id               bigint NOT NULL REFERENCES stages (id) ON DELETE CASCADE,
    owner_id               bigint NOT NULL DEFAULT 0,  -- 0: no owner (a key column cannot be NULL)
    currency               text NOT NULL,
    deals                  bigint NOT NULL DEFAULT 0,
    amount                 numeric NOT NULL DEFAULT 0,
    stage_weighted_amount  numeric NOT NULL DEFAULT 0,
    amount_x_probability   numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (stage_id, owner_id, currency)
);

-- The functions keep this schema's search_path (FROM CURRENT: the migration runs in the tenant's
-- schema): a change made from outside the scope (a cascade through a foreign key, a maintenance
-- script with another search_path) still finds this schema's deal_totals.
-- Rows are applied in key order, so two transactions changing the same totals lock them in the
-- same order and never deadlock on them.
CREATE FUNCTION deal_totals_add() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO deal_totals AS t (stage_id, owner_id, currency, deals, amount, stage_weighted_amount,
                                  amount_x_probability)
    SELECT stage_id, coalesce(owner_id, 0), currency, count(*), sum(amount),
           coalesce(sum(amount) FILTER (WHERE probability IS NULL), 0),
           coalesce(sum(amount * probability) FILTER (WHERE probability IS NOT NULL), 0)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (stage_id, owner_id, currency) DO UPDATE SET
        deals = t.deals + excluded.deals, amount = t.amount + excluded.amount,
        stage_weighted_amount = t.stage_weighted_amount + excluded.stage_weighted_amount,
        amount_x_probability = t.amount_x_probability + excluded.amount_x_probability;
    RETURN NULL;
END $$;

CREATE FUNCTION deal_totals_subtract() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO deal_totals AS t (stage_id, owner_id, currency, deals, amount, stage_weighted_amount,
                                  amount_x_probability)
    SELECT stage_id, coalesce(owner_id, 0), currency, -count(*), -sum(amount),
           -coalesce(sum(amount) FILTER (WHERE probability IS NULL), 0),
           -coalesce(sum(amount * probability) FILTER (WHERE probability IS NOT NULL), 0)
    FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (stage_id, owner_id, currency) DO UPDATE SET
        deals = t.deals + excluded.deals, amount = t.amount + excluded.amount,
        stage_weighted_amount = t.stage_weighted_amount + excluded.stage_weighted_amount,
        amount_x_probability = t.amount_x_probability + excluded.amount_x_probability;
    RETURN NULL;
END $$;

-- An update touches the totals only for deals whose stage, owner, currency, amount or
-- probability changed (a note or last_activity_at changes nothing here).
CREATE FUNCTION deal_totals_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    WITH changed AS (
        SELECT o.stage_id AS o_stage, coalesce(o.owner_id, 0) AS o_owner, o.currency AS o_currency,
               o.amount AS o_amount, o.probability AS o_probability,
               n.stage_id AS n_stage, coalesce(n.owner_id, 0) AS n_owner, n.currency AS n_currency,
               n.amount AS n_amount, n.probability AS n_probability
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.stage_id, o.owner_id, o.currency, o.amount, o.probability)
              IS DISTINCT FROM (n.stage_id, n.owner_id, n.currency, n.amount, n.probability)
    ), delta AS (
        SELECT o_stage AS stage_id, o_owner AS owner_id, o_currency AS currency, -1 AS deals, -o_amount AS amount,
               CASE WHEN o_probability IS NULL THEN -o_amount ELSE 0 END AS stage_weighted_amount,
               CASE WHEN o_probability IS NULL THEN 0 ELSE -o_amount * o_probability END AS amount_x_probability
        FROM changed
        UNION ALL
        SELECT n_stage, n_owner, n_currency, 1, n_amount,
               CASE WHEN n_probability IS NULL THEN n_amount ELSE 0 END,
               CASE WHEN n_probability IS NULL THEN 0 ELSE n_amount * n_probability END
        FROM changed
    )
    INSERT INTO deal_totals AS t (stage_id, owner_id, currency, deals, amount, stage_weighted_amount,
                                  amount_x_probability)
    SELECT stage_id, owner_id, currency, sum(deals), sum(amount), sum(stage_weighted_amount),
           sum(amount_x_probability)
    FROM delta GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (stage_id, owner_id, currency) DO UPDATE SET
        deals = t.deals + excluded.deals, amount = t.amount + excluded.amount,
        stage_weighted_amount = t.stage_weighted_amount + excluded.stage_weighted_amount,
        amount_x_probability = t.amount_x_probability + excluded.amount_x_probability;
    RETURN NULL;
END $$;

CREATE TRIGGER deal_totals_insert AFTER INSERT ON deals REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_add();
CREATE TRIGGER deal_totals_delete AFTER DELETE ON deals REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_subtract();
CREATE TRIGGER deal_totals_update AFTER UPDATE ON deals REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_update();

-- Deals that exist already (none in a new workspace)
INSERT INTO deal_totals (stage_id, owner_id, currency, deals, amount, stage_weighted_amount, amount_x_probability)
SELECT stage_id, coalesce(owner_id, 0), currency, count(*), sum(amount),
       coalesce(sum(amount) FILTER (WHERE probability IS NULL), 0),
       coalesce(sum(amount * probability) FILTER (WHERE probability IS NOT NULL), 0)
FROM deals GROUP BY 1, 2, 3;
