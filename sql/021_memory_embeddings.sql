-- Memory recall's optional semantic pass (issue 19, EMBEDDINGS_BASE_URL): each memory's vector
-- from an OpenAI-compatible /embeddings endpoint, stored as real[] (no extension needed), unit
-- length, so that a dot product is the cosine. Vectors are made after the write, by any
-- process's MemoryEmbedder, and retried with a growing delay until they are made.
ALTER TABLE memories
    ADD COLUMN embedding real[],
    -- The model the vector came from: recall compares vectors of its own model only.
    ADD COLUMN embedding_model text,
    -- When the embedder should (next) try; NULL: nothing to do (made, or embeddings are off).
    ADD COLUMN embedding_due timestamptz,
    ADD COLUMN embedding_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN embedding_error text;

-- The embedder's queue, by when each memory is due.
CREATE INDEX memories_to_embed ON memories (embedding_due) WHERE embedding_due IS NOT NULL;

-- The cosine of two unit vectors (NULL when either is missing).
CREATE FUNCTION agentd_dot(a real[], b real[]) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (SELECT sum(x::float8 * y::float8) FROM unnest(a, b) AS t(x, y));
