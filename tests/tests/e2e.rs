//! End-to-end suites: the real binaries on loopback. Each test starts its own
//! coordinator and agents in a temporary directory.

mod e2e {
    pub mod audit;
    pub mod aws_bridge;
    pub mod bench;
    pub mod chaos;
    pub mod cli;
    pub mod console;
    pub mod control;
    pub mod documents;
    pub mod failover;
    pub mod health;
    pub mod install;
    pub mod inventory;
    pub mod limits;
    pub mod metrics;
    pub mod node_policy;
    pub mod node_status;
    pub mod one_door;
    pub mod packaging;
    pub mod parameters;
    pub mod postgres_fixture;
    pub mod recovery;
    pub mod registration;
    pub mod releases;
    pub mod replicas;
    pub mod root_token;
    pub mod rotation;
    pub mod run_command;
    pub mod secrets;
    pub mod security;
    pub mod slow_clients;
    pub mod ssm_http;
    pub mod ssm_sdk;
    pub mod trust;
    pub mod trust_scope;
    pub mod tutorial;
    pub mod update;
}
