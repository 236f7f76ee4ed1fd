// libFuzzer target: parse_client_hello on any bytes. Beyond the sanitizers' checks: a server
// name read is 1..255 bytes of lower-case letters, digits, '-', '_' and '.' (what routes compare
// with); nothing asks for more once the scan limit is reached; the verdict depends only on the
// bytes (the same input twice, and the input followed by anything, read the same once done).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "net/wire/client_hello.hpp"

using fp::net::ClientHello;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ClientHello h = fp::net::parse_client_hello(data, size);
    if (h.status == ClientHello::Status::kIncomplete && size >= fp::net::kClientHelloScan)
        std::abort();
    for (std::size_t i = 0; i < h.name_len; ++i) {
        const char c = h.name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            std::abort();
    }
    if (h.status != ClientHello::Status::kDone) return 0;
    std::vector<std::uint8_t> more(data, data + size);
    more.push_back(0x16);  // whatever follows a complete ClientHello is not read
    const ClientHello again = fp::net::parse_client_hello(more.data(), more.size());
    if (again.status != ClientHello::Status::kDone || again.name_len != h.name_len ||
        std::memcmp(again.name, h.name, h.name_len) != 0)
        std::abort();
    return 0;
}
