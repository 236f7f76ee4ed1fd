# Build variants. Each module library is built once per variant from the same sources, so one build
# tree (and one CTest run) holds the plain tests, the ASan+UBSan tests and the TSan tests:
#   ""     the build type's flags (Release for users)
#   _asan  ASan + UBSan, FRAGPROXY_DEBUG checks on, poisoning of free fragment space
#   _tsan  TSan; no FRAGPROXY_DEBUG, whose mutex would hide the races TSan is there to find
set(FP_VARIANTS "")
if(FRAGPROXY_TESTS)
  list(APPEND FP_VARIANTS _asan _tsan)
endif()

set(FP_FLAGS_asan -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g)
# -Wno-tsan: Asio (the admin endpoint, app/) uses atomic_thread_fence, which GCC warns TSan does
# not model; no TSan test runs app/ code.
set(FP_FLAGS_tsan -fsanitize=thread -fno-omit-frame-pointer -O1 -g -Wno-tsan)
set(FP_DEFS_asan FRAGPROXY_DEBUG)
set(FP_DEFS_tsan "")

# fp_variant_flags(target variant): applies the variant's compile and link flags.
function(fp_variant_flags target variant)
  if(variant STREQUAL "")
    return()
  endif()
  string(SUBSTRING "${variant}" 1 -1 v)
  target_compile_options(${target} PRIVATE ${FP_FLAGS_${v}})
  target_link_options(${target} PRIVATE ${FP_FLAGS_${v}})
  if(FP_DEFS_${v})
    target_compile_definitions(${target} PUBLIC ${FP_DEFS_${v}})
  endif()
endfunction()
