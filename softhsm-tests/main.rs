//! Integration tests against real SoftHSM2 tokens. Run them with `softhsm-tests/run.sh`, which
//! installs what they need and starts from a fresh token directory.

mod common;

mod api;
mod api_schema;
mod apple_schema;
mod architecture;
mod audit;
mod auth_failures;
mod bad_config;
mod ceremony;
mod console;
mod crl_partitions;
mod directory;
mod evidence;
mod fake_intune;
mod fake_mdm;
mod fake_push;
mod gateway;
mod hsm_ops;
mod identity;
mod idp;
mod intune;
mod intune_usage;
mod lifecycle;
mod multinode;
mod multinode_upgrade;
mod own_tokens;
mod piv;
mod profiles;
mod push;
mod push_graph;
mod push_jamf_profile;
mod push_webhook;
mod readme;
mod registration;
mod rollover;
mod scep;
mod serve;
mod store_binding;
mod trust_model;
mod web_client;
