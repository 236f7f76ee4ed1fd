# Layers: one static library per folder, and a wrong-way include fails the build.
#
#   alloc/ <- net/base/ <- net/engine/ <- net/tcp/, net/udp/ <- net/worker/ <- app/
#             net/base/ <- net/wire/ <- net/policy/ <- net/tcp/, net/udp/
#
# A library does not see the source tree: its include path is a directory of its own in the
# build tree holding one symbolic link, to its folder (layers/engine/net/engine -> net/engine),
# and it sees its dependencies' folders only through theirs (PUBLIC, so they pass on). So
# "net/tcp/tcp_relay.hpp" does not resolve from net/engine/, and an include of a layer the
# library does not declare is a compile error, not a convention.
#
# fp_layer(NAME engine DIR net/engine SOURCES a.cpp ... DEPS base alloc LIBS PkgConfig::URING)
# makes fp_engine, fp_engine_asan, fp_engine_tsan (FP_VARIANTS), each linking its DEPS' variant.
function(fp_layer)
  cmake_parse_arguments(L "" "NAME;DIR" "SOURCES;DEPS;LIBS" ${ARGN})
  set(root ${PROJECT_BINARY_DIR}/layers/${L_NAME})
  get_filename_component(parent ${root}/${L_DIR} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  if(NOT EXISTS ${root}/${L_DIR})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${L_DIR} ${root}/${L_DIR} SYMBOLIC)
  endif()
  list(TRANSFORM L_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/${L_DIR}/)
  foreach(variant IN ITEMS "" ${FP_VARIANTS})
    set(target fp_${L_NAME}${variant})
    add_library(${target} STATIC ${L_SOURCES})
    target_include_directories(${target} PUBLIC ${root})
    foreach(dep IN LISTS L_DEPS)
      target_link_libraries(${target} PUBLIC fp_${dep}${variant})
    endforeach()
    target_link_libraries(${target} PUBLIC ${L_LIBS})
    fp_variant_flags(${target} "${variant}")
  endforeach()
endfunction()
