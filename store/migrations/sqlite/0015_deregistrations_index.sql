-- Every replica looks each second for instances deregistered since its last
-- look (agents are admitted from memory between looks): only deregistered
-- rows are indexed.
CREATE INDEX instances_deregistered ON instances (deregistered_ms)
    WHERE deregistered_ms IS NOT NULL;
