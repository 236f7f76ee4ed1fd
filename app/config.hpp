#pragma once
// The YAML configuration, parsed into typed settings before anything starts. Every error is
// reported as `file:line:col: message` (ConfigError); unknown keys are errors.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "app/resolver.hpp"
#include "net/base/address.hpp"
#include "net/policy/settings.hpp"

namespace fp::app {

class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// access_log: {path: FILE or "-" (stderr), format: json|text}: one line per connection or session.
struct AccessLogSettings {
    std::string path;
    bool json = true;
};

struct Config {
    std::string source;  // file name, for messages
    unsigned workers = 1;
    // SIGTERM/SIGINT: how long established connections and sessions may finish before the rest
    // are closed (0: at once).
    std::chrono::milliseconds drain_timeout{30000};
    std::optional<net::SockAddr> admin;  // admin: {listen: ADDR}: the admin endpoint; off if unset
    std::string user;  // user: NAME: started as root, run as this user once the sockets are bound
    std::optional<AccessLogSettings> access_log;
    net::WorkerSettings worker;
    std::pair<int, int> arena_mark{-1, -1};  // where memory.arena was set (line, column; 0-based)
    std::vector<std::string> notes;  // what parsing noticed (a name that kept its old addresses)
};

// Throw ConfigError. Upstream DNS names go through `resolver` (null: a fresh one, which keeps
// nothing from an earlier resolve: a name that does not resolve is an error).
Config load_config(const std::string& path, Resolver* resolver = nullptr);
Config parse_config(const std::string& text, const std::string& source,
                    Resolver* resolver = nullptr);
std::string describe(const Config& config);  // the resolved config, as YAML, for --check
// Throws ConfigError when the workers' memory exceeds what the process can have (RAM, cgroup).
void check_memory(const Config& config);

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);  // 250ms, 5s, 2m
std::optional<std::uint64_t> parse_size(std::string_view text);  // 512, 64KiB, 64MiB, 1GiB

}  // namespace fp::app
