//! The corral daemon as a library. The `corral` binary (`main.rs`) is a thin command line
//! over [`server::serve`]; the fuzz targets in `fuzz/` reach the parsers of outside input
//! through [`fuzzing`] (built for tests and with the `fuzzing` feature only).

pub mod config;
mod container;
mod cri;
mod error;
mod fault;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod images;
mod pod;
pub mod server;
mod store;
mod streaming;
