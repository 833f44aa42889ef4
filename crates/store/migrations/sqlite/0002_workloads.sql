-- The workload queue (jobs and interactive instances) and usage records.

CREATE TABLE workloads (
    id INTEGER PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users (id),
    class_id BIGINT REFERENCES classes (id),
    kind TEXT NOT NULL CHECK (kind IN ('job', 'instance')),
    instance_type TEXT,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
    held BOOLEAN NOT NULL DEFAULT FALSE,
    priority INTEGER NOT NULL,
    queue_order BIGINT NOT NULL,
    argv TEXT NOT NULL,
    env TEXT NOT NULL,
    workdir TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    gpus INTEGER NOT NULL,
    time_limit_s BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    node TEXT,
    gpu_devices TEXT,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    enforcement TEXT NOT NULL DEFAULT '',
    port INTEGER,
    secret TEXT,
    stop_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX workloads_by_state ON workloads (state);
CREATE INDEX workloads_by_owner ON workloads (owner_id);
CREATE INDEX workloads_by_class ON workloads (class_id);

-- One row per workload start; the end is filled in when it ends.
CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY,
    workload_id BIGINT NOT NULL REFERENCES workloads (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    class_id BIGINT REFERENCES classes (id),
    node TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    gpu_devices TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT
);
CREATE INDEX usage_records_by_user ON usage_records (user_id);
