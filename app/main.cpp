// fragproxy: the binary. Parses the command line and the config (every error before anything
// starts), starts one worker per core, and stops them cleanly on SIGINT or SIGTERM.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>

#include "app/admin.hpp"
#include "app/config.hpp"
#include "app/json.hpp"
#include "app/metrics.hpp"
#include "app/privileges.hpp"
#include "app/proxy.hpp"
#include "app/self_check.hpp"
#include "app/systemd.hpp"
#include "net/engine/features.hpp"

namespace {

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);  // writes --stats-json, then goes on
    sigaddset(&set, SIGHUP);   // reload
    return set;
}

// Writing the stats needs a descriptor even when the workers have used them all: one is kept
// in reserve (/dev/null) and given up for the moment of the write.
int spare_fd = -1;
// The spare descriptor and the files written with it: the stats (main thread) and the ready
// record (after a reload: the main thread on SIGHUP, the admin thread on POST /reload).
std::mutex files_mu;

// Writes `text` to a temporary file renamed over `path`, so a reader never sees half of it.
void write_atomically(const std::string& path, const std::string& text, const char* what) {
    std::lock_guard lock(files_mu);
    if (spare_fd >= 0) ::close(spare_fd);
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        out << text;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        std::cerr << "fragproxy: " << what << " " << path << ": " << std::strerror(errno) << "\n";
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void write_stats(const fp::app::Proxy& proxy, const std::string& path, bool at_exit) {
    if (!path.empty()) write_atomically(path, proxy.stats_json(at_exit), "--stats-json");
}

// --ready-file: {"pid": N, "listeners": [{"name", "protocol", "address"}, ...], "admin": ADDR or
// null}, written once every listener is bound (the kernel's ports for port-0 ones) and again
// after each reload.
void write_ready(const std::string& path, const fp::app::Config& running,
                 const std::string& admin) {
    if (path.empty()) return;
    using fp::app::json_quoted;
    std::string o = "{\"pid\": " + std::to_string(::getpid()) + ", \"listeners\": [";
    auto each = [&](const auto& list, const char* protocol) {
        for (const auto& l : list)
            o += std::string(o.back() == '[' ? "" : ", ") + "{\"name\": " + json_quoted(l.name) +
                 ", \"protocol\": \"" + protocol +
                 "\", \"address\": " + json_quoted(l.listen.str()) + "}";
    };
    each(running.worker.listeners, "tcp");
    each(running.worker.udp_listeners, "udp");
    o += "], \"admin\": " + (admin.empty() ? std::string("null") : json_quoted(admin)) + "}\n";
    write_atomically(path, o, "--ready-file");
}

// A proxy needs a descriptor per client and per upstream: take the hard limit, and say so when
// the configured connections cannot all have theirs (past it, accepting pauses; nothing drops).
void raise_fd_limit(const fp::app::Config& config) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    std::uint64_t need = 64;
    for (const auto& l : config.worker.listeners)
        need += 2ull * l.max_connections + config.workers;
    for (const auto& l : config.worker.udp_listeners)
        need += std::uint64_t(l.max_sessions + 1) * config.workers;
    if (need > rl.rlim_cur)
        std::cerr << "fragproxy: warning: the listeners' max_connections and max_sessions need up "
                     "to "
                  << need << " file descriptors; RLIMIT_NOFILE is " << rl.rlim_cur
                  << " (raise it, e.g. LimitNOFILE=); when it runs out, accepting pauses\n";
}

const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

// The first stop signal: no new connections or sessions; what is established may finish within
// drain_timeout, then the rest is closed (reset if data is still queued). A second stop signal
// ends the drain at once. SIGUSR1 still writes the stats meanwhile.
void drain(fp::app::Proxy& proxy, std::chrono::milliseconds timeout, int sig, const sigset_t& set,
           const std::string& stats_path) {
    fp::app::systemd::stopping(timeout.count() ? "draining" : "stopping");
    if (timeout.count() == 0) {
        std::cerr << "fragproxy: " << signal_name(sig) << ": stopping\n";
        return;
    }
    std::cerr << "fragproxy: " << signal_name(sig)
              << ": draining: listeners closed, established connections may finish within "
              << timeout.count() << " ms (a second SIGTERM or SIGINT stops at once)\n";
    proxy.drain();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    constexpr timespec kPoll{0, 50L * 1000 * 1000};  // how often the workers are asked
    while (!proxy.drained()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            std::cerr << "fragproxy: drain_timeout passed: closing what is left\n";
            return;
        }
        int s = sigtimedwait(&set, nullptr, &kPoll);
        if (s == SIGUSR1) write_stats(proxy, stats_path, false);
        if (s == SIGHUP) std::cerr << "fragproxy: SIGHUP while draining: no reload\n";
        if (s == SIGINT || s == SIGTERM) {
            std::cerr << "fragproxy: " << signal_name(s) << " again: stopping at once\n";
            return;
        }
    }
    std::cerr << "fragproxy: drained: every connection ended\n";
}

std::string status(const fp::app::Config& c) {
    return std::to_string(c.worker.listeners.size()) + " tcp and " +
           std::to_string(c.worker.udp_listeners.size()) + " udp listener(s), " +
           std::to_string(c.workers) + " worker(s)";
}

// SIGHUP or POST /reload: the file again, with the command line's overrides. Logged either way;
// a file that does not parse leaves everything running as it was.
// ready: rewrites the ready record (--ready-file) from what runs after the reload.
fp::app::Proxy::ReloadResult reload(fp::app::Proxy& proxy, const std::string& path,
                                    unsigned workers, fp::app::Resolver& resolver,
                                    const std::function<void()>& ready) {
    fp::app::Proxy::ReloadResult r;
    fp::app::Config next;
    fp::app::systemd::reloading();
    try {
        next = fp::app::load_config(path, &resolver);
        for (const std::string& note : next.notes)
            std::cerr << "fragproxy: reload: " << note << "\n";
        if (workers) next.workers = workers;
        fp::app::check_memory(next);
        r = proxy.reload(std::move(next));
    } catch (const fp::app::ConfigError& e) {
        proxy.reload_failed();
        r = {false, e.what()};
    }
    const fp::app::Config now = proxy.config();
    ready();
    fp::app::systemd::ready(status(now));
    if (!r.ok) {
        std::cerr << "fragproxy: reload failed: " << r.message << "\n";
        return r;
    }
    std::cerr << "fragproxy: reload: " << path << " applied: " << now.worker.listeners.size()
              << " tcp and " << now.worker.udp_listeners.size()
              << " udp listener(s); established connections keep their settings\n";
    if (!r.message.empty()) std::cerr << "fragproxy: reload: " << r.message << "\n";
    return r;
}

}  // namespace

static int run(int argc, char** argv) {
    CLI::App cli{"fragproxy: an io_uring TCP proxy fed by a page-fragment allocator"};
    std::string config_path = "configs/fragproxy.yaml";
    bool check = false, self_check = false, features = false;
    std::string list_metrics;
    std::string stats_path, ready_path;
    unsigned workers = 0;
    cli.add_option("-c,--config", config_path, "YAML configuration file")->capture_default_str();
    cli.add_flag("--check", check, "validate the configuration, print it resolved, and exit");
    cli.add_option("--workers", workers, "worker threads (overrides the config's workers)")
        ->check(CLI::Range(1, 256));
    cli.add_flag("--self-check", self_check, "run the allocator self-check and exit");
    cli.add_flag("--features", features,
                 "print what this kernel's io_uring offers and the receive path auto picks");
    cli.add_option("--list-metrics", list_metrics,
                   "print the per-worker stats' /metrics families and exit: md (a Markdown "
                   "table) or json (every stat with its --stats-json key)")
        ->expected(0, 1)
        ->default_str("md")
        ->check(CLI::IsMember({"md", "json"}));
    cli.add_option("--ready-file", ready_path,
                   "write the ready record (pid, every listener's address, admin) as JSON to this "
                   "file once listening, and again after each reload");
    cli.add_option("--stats-json", stats_path,
                   "write every counter as JSON to this file on SIGUSR1 and at exit");
    cli.set_version_flag("--version", std::string("fragproxy ") + FRAGPROXY_VERSION);
    CLI11_PARSE(cli, argc, argv);

    if (!list_metrics.empty() || cli.count("--list-metrics")) {
        std::cout << (list_metrics == "json" ? fp::app::stats_list_json() : fp::app::stats_table());
        return 0;
    }
    if (features) {
        std::cout << fp::net::probe_kernel().describe();
        return 0;
    }
    if (self_check) {
        try {
            return fp::app::self_check(fp::PoolConfig{}, std::cout) ? 0 : 1;
        } catch (const std::exception& e) {
            std::cerr << "fragproxy: self-check: " << e.what() << "\n";
            return 1;
        }
    }
    fp::app::Config config;
    fp::app::Resolver resolver;  // upstream names: what they resolved to last, kept by reloads
    try {
        config = fp::app::load_config(config_path, &resolver);
        if (workers) config.workers = workers;
        fp::app::check_memory(config);
    } catch (const fp::app::ConfigError& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    if (check) {
        std::cout << "# " << config_path << ": valid\n" << fp::app::describe(config);
        return 0;
    }

    // Block the stop signals before any thread starts, so only sigwait() below sees them.
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(config);
    if (!stats_path.empty()) spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

    std::optional<fp::app::AccessLog> access_log;  // outlives the workers that write to it
    try {
        if (config.access_log) access_log.emplace(*config.access_log, config.workers);
    } catch (const std::exception& e) {
        std::cerr << "fragproxy: " << e.what() << "\n";
        return 1;
    }
    fp::app::Proxy proxy(config, access_log ? &*access_log : nullptr);
    std::optional<fp::app::AdminServer> admin;  // stops before the proxy does
    auto ready = [&] { write_ready(ready_path, proxy.config(), admin ? admin->address() : ""); };
    try {
        proxy.start();
        if (config.admin) {
            admin.emplace(*config.admin, proxy, [&] {
                auto r = reload(proxy, config_path, workers, resolver, ready);
                return std::pair{r.ok, r.message};
            });
            std::cerr << "fragproxy: admin endpoint on http://" << admin->address() << "/\n";
        }
        fp::app::drop_privileges(config.user);  // every socket is bound
    } catch (const std::exception& e) {
        std::cerr << "fragproxy: " << e.what() << "\n";
        return 1;
    }
    const fp::app::Config running = proxy.config();  // (port-0 listeners: the kernel's ports)
    for (const auto& l : running.worker.listeners)
        std::cerr << "fragproxy: " << l.name << ": tcp " << l.listen.str() << " -> "
                  << l.upstreams.size() << " upstream(s), " << config.workers << " worker(s)\n";
    for (const auto& l : running.worker.udp_listeners)
        std::cerr << "fragproxy: " << l.name << ": udp " << l.listen.str() << " -> "
                  << l.upstreams.size() << " upstream(s), " << config.workers << " worker(s)\n";
    ready();
    fp::app::systemd::ready(status(config));
    int sig = 0;
    while (sigwait(&set, &sig) == 0) {
        if (sig == SIGUSR1) {
            write_stats(proxy, stats_path, false);
            if (access_log) access_log->reopen();
        } else if (sig == SIGHUP)
            reload(proxy, config_path, workers, resolver, ready);
        else
            break;
    }
    drain(proxy, config.drain_timeout, sig, set, stats_path);
    proxy.stop();
    proxy.report(std::cerr);
    write_stats(proxy, stats_path, true);
    return proxy.leaked() ? 2 : 0;
}

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {  // anything start-up code did not report itself
        std::cerr << "fragproxy: " << e.what() << "\n";
        return 1;
    }
}
