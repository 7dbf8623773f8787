# ctest's `embedding` test: troupe used by another project, both ways.
#   1. cmake --install of this build into a scratch prefix, then the project
#      in project/ finds it with find_package(troupe);
#   2. the same project takes troupe's sources with add_subdirectory.
# Each builds and runs tiny_job; both must train the same bits.
# Inputs (-D): TROUPE_SOURCE, TROUPE_BUILD, WORK, GENERATOR, LAUNCHER.
cmake_minimum_required(VERSION 3.22)

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(common -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release)
if(LAUNCHER)
  list(APPEND common -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}
       -DCMAKE_C_COMPILER_LAUNCHER=${LAUNCHER})
endif()
set(project ${TROUPE_SOURCE}/tests/embedding/project)

# 1. Installed, found as a package.
run("cmake --install" ${CMAKE_COMMAND} --install ${TROUPE_BUILD}
    --prefix ${WORK}/prefix)
foreach(f lib/cmake/troupe/troupeConfig.cmake include/troupe/actors/graph.hpp
          include/troupe/schema/troupe.capnp.h lib/libtroupe_actors.a bin/troupe)
  if(NOT EXISTS ${WORK}/prefix/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
run("configure with find_package" ${CMAKE_COMMAND} -S ${project}
    -B ${WORK}/package ${common} -DCMAKE_PREFIX_PATH=${WORK}/prefix)
run("build with find_package" ${CMAKE_COMMAND} --build ${WORK}/package)
run("tiny_job (find_package)" ${WORK}/package/tiny_job ${WORK})
set(from_package "${run_out}")
message(STATUS "find_package: ${from_package}")
run("the installed troupe" ${WORK}/prefix/bin/troupe --version)

# 2. From the sources, with add_subdirectory.
run("configure with add_subdirectory" ${CMAKE_COMMAND} -S ${project}
    -B ${WORK}/subdirectory ${common} -DTROUPE_FROM=${TROUPE_SOURCE})
run("build with add_subdirectory" ${CMAKE_COMMAND} --build
    ${WORK}/subdirectory --target tiny_job)
run("tiny_job (add_subdirectory)" ${WORK}/subdirectory/tiny_job ${WORK})
set(from_source "${run_out}")
message(STATUS "add_subdirectory: ${from_source}")

if(NOT from_package MATCHES "^steps 32 params_digest [0-9a-f]+\n$")
  message(FATAL_ERROR "tiny_job printed: ${from_package}")
endif()
if(NOT from_package STREQUAL from_source)
  message(FATAL_ERROR "the two builds trained different bits:\n"
                      "${from_package}${from_source}")
endif()
file(REMOVE_RECURSE ${WORK})
