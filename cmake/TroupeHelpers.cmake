# Helpers shared by every folder's CMakeLists.txt.

# Warnings (and, with TROUPE_WERROR, errors) and sanitizers for our own code.
function(troupe_target_defaults target)
  # C++ only: nvcc takes other flags (devices/CMakeLists.txt sets them).
  set(cxx "$<COMPILE_LANGUAGE:CXX>")
  target_compile_options(${target} PRIVATE
    "$<${cxx}:-Wall;-Wextra;-Wpedantic;-Wno-unused-parameter>")
  if(TROUPE_WERROR)
    target_compile_options(${target} PRIVATE "$<${cxx}:-Werror>")
  endif()
  if(TROUPE_SANITIZE)
    target_compile_options(${target} PUBLIC
      "$<${cxx}:-fsanitize=${TROUPE_SANITIZE};-fno-omit-frame-pointer;-fno-sanitize-recover=all>")
    target_link_options(${target} PUBLIC -fsanitize=${TROUPE_SANITIZE})
  endif()
endfunction()

# Headers are included by their path from the top ("actors/run.hpp"): the
# source and build folders here, include/troupe once installed.
function(troupe_public_includes target)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/troupe>)
endfunction()

# troupe_add_library(NAME SOURCES... DEPS ...): a static library troupe_X,
# also known as troupe::X (the name other projects use, either way).
function(troupe_add_library name)
  cmake_parse_arguments(arg "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${arg_SOURCES})
  troupe_public_includes(${name})
  target_link_libraries(${name} PUBLIC ${arg_DEPS})
  troupe_target_defaults(${name})
  string(REGEX REPLACE "^troupe_" "" short ${name})
  set_target_properties(${name} PROPERTIES EXPORT_NAME ${short})
  add_library(troupe::${short} ALIAS ${name})
endfunction()

# troupe_add_test(NAME LABEL label SOURCES... DEPS ... [ARGS ...]): one
# Boost.Test binary, registered with ctest under a label (cpu, gpu,
# multiprocess); ARGS are extra command-line arguments for it.
function(troupe_add_test name)
  cmake_parse_arguments(arg "" "LABEL;TIMEOUT" "SOURCES;DEPS;ARGS" ${ARGN})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 600)
  endif()
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE ${arg_DEPS} Boost::unit_test_framework)
  target_compile_definitions(${name} PRIVATE BOOST_TEST_DYN_LINK
                             TROUPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                             TROUPE_BINARY_DIR="${PROJECT_BINARY_DIR}")
  troupe_target_defaults(${name})
  add_test(NAME ${name} COMMAND ${name} --report_level=short ${arg_ARGS}
           WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES LABELS "${arg_LABEL}"
                       TIMEOUT ${arg_TIMEOUT})
endfunction()
