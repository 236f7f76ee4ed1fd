#pragma once
// A JSON string literal of s (quotes, backslashes and control characters escaped): the access
// log's JSON lines, the ready record.
#include <cstdio>
#include <string>

namespace fp::app {

inline std::string json_quoted(const std::string& s) {
    std::string o = "\"";
    for (char ch : s) {
        const auto u = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') {
            o += '\\';
            o += ch;
        } else if (u < 0x20) {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\u%04x", u);
            o += esc;
        } else {
            o += ch;
        }
    }
    return o + "\"";
}

}  // namespace fp::app
