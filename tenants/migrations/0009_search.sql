-- Global search and duplicate detection (kith.tenants.search). Runs with search_path set to the
-- tenant's schema; public objects are qualified.
--
-- The trigram indexes of 0001/0007 serve queries of 3 characters or more. Measured on 1,000,000
-- contacts (60% Chinese names, EXPLAIN ANALYZE), shorter queries and phone numbers need more:
-- - names starting with the query (exact and prefix matches rank first, and a 1-character query
--   finds only those): a btree on the lowercased name in the "C" collation, whose byte order lets
--   LIKE 'q%' use it, ordered newest first within a name;
-- - 2-character queries (张伟, 北京, 科技): trigrams cannot serve them (a 2-character pattern has no
--   trigram), so a GIN index of each name's character pairs (kith_bigrams) does;
-- - phone numbers by their last digits ("138 0013 8000", "8000", "010 1234 5678" against
--   "+86 138 0013 8000"): a btree on the reversed digits. A trigram index of the digits was tried
--   and dropped: every number shares its country code's trigrams, so its scans took 130-180 ms.

-- Every distinct pair of adjacent characters of the lowercased text ('{张伟}' for 张伟).
CREATE FUNCTION kith_bigrams(value text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce(array_agg(DISTINCT substr(lowered, i, 2)), '{}')
        FROM (SELECT lower(value) AS lowered) AS t, generate_series(1, char_length(lowered) - 1) AS i
    $$;

CREATE INDEX contacts_name_prefix_idx ON contacts ((lower(name) COLLATE "C"), id DESC);
CREATE INDEX contacts_bigram_idx ON contacts USING gin (kith_bigrams(name || ' ' || company_name));
CREATE INDEX contacts_phone_suffix_idx ON contacts ((reverse(translate(phone, ' +()-.', '')) COLLATE "C"))
    WHERE phone <> '';

CREATE INDEX companies_name_prefix_idx ON companies ((lower(name) COLLATE "C"), id DESC);
CREATE INDEX companies_bigram_idx ON companies USING gin (kith_bigrams(name));
CREATE INDEX companies_phone_suffix_idx ON companies ((reverse(translate(phone, ' +()-.', '')) COLLATE "C"))
    WHERE phone <> '';

CREATE INDEX leads_name_prefix_idx ON leads ((lower(name) COLLATE "C"), id DESC);
CREATE INDEX leads_bigram_idx ON leads USING gin (kith_bigrams(name || ' ' || company_name));
CREATE INDEX leads_phone_suffix_idx ON leads ((reverse(translate(phone, ' +()-.', '')) COLLATE "C"))
    WHERE phone <> '';

CREATE INDEX deals_name_prefix_idx ON deals ((lower(name) COLLATE "C"), id DESC);
CREATE INDEX deals_bigram_idx ON deals USING gin (kith_bigrams(name));

-- Duplicates: the "possible duplicates" page groups contacts by name and company in index order
-- (GROUP BY ... HAVING count(*) > 1 over an ordered index scan, stopped by LIMIT).
CREATE INDEX contacts_name_company_idx ON contacts (lower(name), lower(company_name)) WHERE company_name <> '';

-- A merge (and a delete) re-points or clears the leads converted into a contact or a company.
CREATE INDEX leads_converted_contact_idx ON leads (converted_contact_id) WHERE converted_contact_id IS NOT NULL;
CREATE INDEX leads_converted_company_idx ON leads (converted_company_id) WHERE converted_company_id IS NOT NULL;
