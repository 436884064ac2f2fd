-- _id and _lastUpdated are searched and sorted on res.id and
-- res.last_updated (search.go); their index rows were never read, and are
-- no longer written (onResRow in index.go).
DELETE FROM idx_token WHERE pid IN (SELECT pid FROM search_param WHERE type = '' AND code = '_id');
DELETE FROM idx_date WHERE pid IN (SELECT pid FROM search_param WHERE type = '' AND code = '_lastUpdated');
