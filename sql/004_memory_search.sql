-- Recall searches one user's memories: a GIN index over (tenant_id, user_id, search) finds the
-- matching rows of that user alone, however many memories other users have. btree_gin ships
-- with PostgreSQL (contrib) and is a trusted extension, so a database owner can create it.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX memories_user_search ON memories USING gin (tenant_id, user_id, search);
DROP INDEX memories_search;
