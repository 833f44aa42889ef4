//! Black-box tests of voxhub: a real server (in-process, or the `voxhub` binary) driven
//! through its HTTP API and command line. Each test starts its own server on a free port
//! with a fresh data directory. Tests are written from the side of the person who must
//! not get through: each refusal checks the status, the error code and message, and that
//! nothing changed.

mod audit;
mod auth;
mod bad_input;
mod classes;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod dataset_pages;
mod datasets;
mod datasets_cli;
mod dicomweb;
mod first_start;
mod invites;
mod openapi;
mod permissions;
mod support;
mod throttle;
mod tokens;
mod users;
mod viewer;
mod workloads;
