// fragproxy: the binary. Until the proxy lands (issue #3) it validates its arguments and runs the
// allocator self-check, and says so.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "app/self_check.hpp"

#ifndef FRAGPROXY_VERSION
#define FRAGPROXY_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
    CLI::App cli{"fragproxy: an io_uring TCP/UDP proxy fed by a page-fragment allocator"};
    std::string config_path;
    cli.add_option("-c,--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
    cli.set_version_flag("--version", std::string("fragproxy ") + FRAGPROXY_VERSION);
    CLI11_PARSE(cli, argc, argv);

    std::cout << "fragproxy " FRAGPROXY_VERSION ": the proxy itself is not built yet"
              << (config_path.empty() ? "" : " (" + config_path + " is not read yet)")
              << "; running the allocator self-check\n";
    try {
        bool ok = fp::app::self_check(fp::PoolConfig{}, std::cout);
        std::cout << (ok ? "self-check passed\n" : "self-check FAILED\n");
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "fragproxy: " << e.what() << "\n";
        return 1;
    }
}
