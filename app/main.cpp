// fragproxy: the binary. Parses the command line and the config (every error before anything
// starts), starts one worker per core, and stops them cleanly on SIGINT or SIGTERM.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "app/config.hpp"
#include "app/proxy.hpp"
#include "app/self_check.hpp"

#ifndef FRAGPROXY_VERSION
#define FRAGPROXY_VERSION "0.0.0"
#endif

namespace {

int wait_for_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"fragproxy: an io_uring TCP proxy fed by a page-fragment allocator"};
    std::string config_path = "configs/fragproxy.yaml";
    bool check = false, self_check = false;
    unsigned workers = 0;
    cli.add_option("-c,--config", config_path, "YAML configuration file")->capture_default_str();
    cli.add_flag("--check", check, "validate the configuration, print it resolved, and exit");
    cli.add_option("--workers", workers, "worker threads (overrides the config's workers)")
        ->check(CLI::Range(1, 256));
    cli.add_flag("--self-check", self_check, "run the allocator self-check and exit");
    cli.set_version_flag("--version", std::string("fragproxy ") + FRAGPROXY_VERSION);
    CLI11_PARSE(cli, argc, argv);

    if (self_check) return fp::app::self_check(fp::PoolConfig{}, std::cout) ? 0 : 1;
    fp::app::Config config;
    try {
        config = fp::app::load_config(config_path);
    } catch (const fp::app::ConfigError& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    if (workers) config.workers = workers;
    if (check) {
        std::cout << "# " << config_path << ": valid\n" << fp::app::describe(config);
        return 0;
    }

    // Block the stop signals before any thread starts, so only sigwait() below sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    fp::app::Proxy proxy(config);
    try {
        proxy.start();
    } catch (const std::exception& e) {
        std::cerr << "fragproxy: " << e.what() << "\n";
        return 1;
    }
    for (const auto& l : config.worker.listeners)
        std::cerr << "fragproxy: " << l.name << ": tcp " << l.listen.str() << " -> "
                  << l.upstreams.size() << " upstream(s), " << config.workers << " worker(s)\n";
    for (const auto& l : config.worker.udp_listeners)
        std::cerr << "fragproxy: " << l.name << ": udp " << l.listen.str() << " -> "
                  << l.upstreams.size() << " upstream(s), " << config.workers << " worker(s)\n";
    int sig = wait_for_signal();
    std::cerr << "fragproxy: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ": stopping\n";
    proxy.stop();
    proxy.report(std::cerr);
    return proxy.leaked() ? 2 : 0;
}
