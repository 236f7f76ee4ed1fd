// libFuzzer target: parse_proxy_header on any bytes. Beyond the sanitizers' checks: a header read
// as done is no longer than the input and reads the same from exactly its own bytes; every prefix
// of a done header asks for more; what asks for more is shorter than the longest header.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "net/proxy_header.hpp"

using fp::net::AccessAddr;
using fp::net::ProxyHeader;

namespace {
bool same(const AccessAddr& a, const AccessAddr& b) {  // field by field: the struct has padding
    return a.family == b.family && a.port == b.port && std::memcmp(a.addr, b.addr, 16) == 0;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ProxyHeader h = fp::net::parse_proxy_header(data, size);
    if (h.status == ProxyHeader::Status::kIncomplete && size >= fp::net::kProxyV2Max) std::abort();
    if (h.status != ProxyHeader::Status::kDone) return 0;
    if (h.length == 0 || h.length > size) std::abort();
    const ProxyHeader again = fp::net::parse_proxy_header(data, h.length);
    if (again.status != ProxyHeader::Status::kDone || again.length != h.length ||
        !same(again.src, h.src) || !same(again.dst, h.dst))
        std::abort();
    if (fp::net::parse_proxy_header(data, h.length - 1).status != ProxyHeader::Status::kIncomplete)
        std::abort();
    return 0;
}
