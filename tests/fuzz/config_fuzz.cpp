// libFuzzer target: the YAML config loader on any text. It must either parse or throw ConfigError
// (file:line:col), never crash, hang or throw anything else; what parses is described and the
// description parses again to the same (what --check prints is a valid config).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "app/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    fp::app::Config c;
    try {
        c = fp::app::parse_config(text, "fuzz.yaml");
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
