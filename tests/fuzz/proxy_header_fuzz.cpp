// libFuzzer target: parse_proxy_header on any bytes. Beyond the sanitizers' checks: a header read
// as done is no longer than the input and reads the same from exactly its own bytes; every prefix
// of a done header asks for more; what asks for more is shorter than the longest header. A v2
// header's TLVs, passed on (all types) onto a header of its addresses with a checksum, read back
// done with the same TLV bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "net/wire/proxy_header.hpp"

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
    if (h.version != 2) return 0;
    static std::byte tlvs[fp::net::kProxyV2Max];
    static std::byte out[fp::net::kProxyHeaderMax + fp::net::kProxyV2Max + fp::net::kCrcTlv];
    fp::net::TlvTypes all;
    all.set();
    const std::size_t n = fp::net::copy_tlvs(data, h, all, tlvs);
    if (n > h.length - h.tlv_offset) std::abort();
    const AccessAddr none;
    const std::size_t m = fp::net::write_proxy_header(out, 2, h.local ? none : h.src,
                                                      h.local ? none : h.dst, {tlvs, n}, true);
    if (m > fp::net::kProxyV2Max) return 0;  // (grown past what a reader accepts)
    const auto* w = reinterpret_cast<const std::uint8_t*>(out);
    const ProxyHeader onward = fp::net::parse_proxy_header(w, m);
    if (onward.status != ProxyHeader::Status::kDone || onward.length != m ||
        onward.tlv_offset + n + fp::net::kCrcTlv != m ||
        std::memcmp(w + onward.tlv_offset, tlvs, n) != 0)
        std::abort();
    return 0;
}
