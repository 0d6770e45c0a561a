fn main() -> std::process::ExitCode {
    corral_runtime::run_helper_mode().unwrap_or(std::process::ExitCode::from(2))
}
