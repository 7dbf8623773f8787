# `cmake --install`: the libraries, their headers (include/troupe, included
# as "actors/run.hpp"), the troupe executable and a CMake package, so that
# another project writes
#   find_package(troupe 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE troupe::actors)
# and finds the executable (for local nodes) as troupe::troupe.
include(CMakePackageConfigHelpers)

set(troupe_libraries troupe_schema troupe_devices troupe_data troupe_runtime
    troupe_modelio troupe_actors)
install(TARGETS ${troupe_libraries} troupe
  EXPORT troupeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir actors data devices modelio runtime)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/${dir}
    FILES_MATCHING PATTERN "*.hpp"
    PATTERN "*.test.hpp" EXCLUDE)
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/schema/troupe.capnp.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/schema)

set(troupe_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)
install(EXPORT troupeTargets NAMESPACE troupe::
  DESTINATION ${troupe_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/troupeConfig.cmake
  INSTALL_DESTINATION ${troupe_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/troupeConfig.cmake
  ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
  DESTINATION ${troupe_cmake_dir})
