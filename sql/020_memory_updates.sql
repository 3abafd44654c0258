-- Memories that change (issue 19): a memory replaced by a newer one stays in the table, marked
-- with what replaced it and when, and recall no longer sees it; a memory whose text is rewritten
-- in place (PUT /agent/memory/{user_id}/{memory_id}) keeps its earlier texts in memory_history.

ALTER TABLE memories
    ADD COLUMN superseded_by uuid,
    ADD COLUMN superseded_at timestamptz,
    -- 1 for the text first written; each rewrite adds one (its earlier texts: memory_history).
    ADD COLUMN version integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz;
COMMENT ON COLUMN memories.superseded_by IS 'The current memory that replaced this one (write with replaces, or a restatement agentd recognised); recall gives that one for what this one matches';
-- A replaced memory leads to its successor.
CREATE INDEX memories_successors ON memories (tenant_id, user_id, superseded_by) WHERE superseded_by IS NOT NULL;

-- The same text is stored once among a user's current memories; a fact restated after it was
-- replaced is a new current memory.
DROP INDEX memories_dedup;
CREATE UNIQUE INDEX memories_dedup ON memories (tenant_id, user_id, md5(memory_info)) WHERE superseded_by IS NULL;

CREATE TABLE memory_history (
    tenant_id   text        NOT NULL,
    user_id     text        NOT NULL,
    memory_id   uuid        NOT NULL,
    version     integer     NOT NULL,
    memory_info text        NOT NULL,
    -- When this text was written, and when it was replaced by the next version.
    written_at  timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, memory_id, version)
);
GRANT SELECT, INSERT, DELETE ON memory_history TO agentd_service;
ALTER TABLE memory_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_history
    USING (tenant_id = current_setting('agentd.tenant_id', true) OR current_setting('agentd.scope', true) = 'system')
    WITH CHECK (tenant_id = current_setting('agentd.tenant_id', true) OR current_setting('agentd.scope', true) = 'system');

-- The term statistics (sql/019) go on counting every memory, replaced or not: a replaced memory
-- still finds its successor (recall gives the current one for what an older one matches), so
-- its words stay in the user's vocabulary.
