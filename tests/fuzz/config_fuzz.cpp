// libFuzzer target: the YAML config loader on any text. It must either parse or throw ConfigError
// (file:line:col), never crash, hang or throw anything else; what parses is described and the
// description parses again to the same (what --check prints is a valid config). Upstream names
// resolve from a fixed table here (the fuzzer's inputs must not become DNS queries): "localhost"
// to 127.0.0.1 and ::1, "backend" to 127.0.0.7; any other name does not resolve.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "app/config.hpp"

namespace {
std::vector<fp::net::SockAddr> table(const std::string& host, std::uint16_t port,
                                     std::string& error) {
    std::vector<fp::net::SockAddr> out;
    const std::string p = ":" + std::to_string(port);
    if (host == "localhost") {
        out.push_back(*fp::net::parse_address("127.0.0.1" + p));
        out.push_back(*fp::net::parse_address("[::1]" + p));
    } else if (host == "backend") {
        out.push_back(*fp::net::parse_address("127.0.0.7" + p));
    } else {
        error = "not in the fuzzer's table";
    }
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    fp::app::Config c;
    fp::app::Resolver resolver(table);
    try {
        c = fp::app::parse_config(text, "fuzz.yaml", &resolver);
    } catch (const fp::app::ConfigError& e) {
        if (std::string(e.what()).rfind("fuzz.yaml:", 0) != 0) std::abort();  // file:line:col
        return 0;
    }
    const std::string d = fp::app::describe(c);
    try {
        if (fp::app::describe(fp::app::parse_config(d, "again.yaml")) != d) std::abort();
    } catch (const fp::app::ConfigError&) {
        std::abort();  // --check printed something that is not a valid config
    }
    return 0;
}
