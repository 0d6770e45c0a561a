//! The corral daemon as a library. The `corral` binary (`main.rs`) is a thin command line
//! over [`server::serve`].

pub mod config;
mod container;
mod cri;
mod error;
mod fault;
mod images;
mod pod;
pub mod server;
mod store;
mod streaming;
