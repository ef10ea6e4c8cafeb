# srv.cmake -- the server layer as a static library, `tandem_srv`.
#
# Included from server/CMakeLists.txt (and, if that has not done it yet,
# from tests/server/CMakeLists.txt). Paths are relative to this file, so it
# works from any directory that includes it.
if(NOT TARGET tandem_srv)
  find_package(Threads REQUIRED)
  find_package(ZLIB REQUIRED) # deflated messages of protocol version 2
  find_package(libwebsockets 4.1 CONFIG REQUIRED) # target: websockets_shared
  if(NOT TARGET PkgConfig::SODIUM)
    pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium>=1.0.18)
  endif()
  if(NOT TARGET PkgConfig::CJSON)
    pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
  endif()
  # The NATS client of the cluster mode (srv_cluster.c, docs/CLUSTER.md).
  if(NOT TARGET PkgConfig::TD_SRV_NATS)
    pkg_check_modules(TD_SRV_NATS REQUIRED IMPORTED_TARGET GLOBAL libnats)
  endif()
  set(_srv ${CMAKE_CURRENT_LIST_DIR})
  add_library(tandem_srv STATIC
    ${_srv}/srv_proto.c
    ${_srv}/srv_auth.c
    ${_srv}/srv_jwt.c
    ${_srv}/cli_args.c
    ${_srv}/cli_keys.c
    ${_srv}/cli_serve.c
    ${_srv}/srv_loop.c
    ${_srv}/srv_http.c
    ${_srv}/srv_static.c
    ${_srv}/srv_native.c
    ${_srv}/srv_conn.c
    ${_srv}/srv_service.c
    ${_srv}/srv_owners.c
    ${_srv}/srv_loader.c
    ${_srv}/srv_model_tandem.c
    ${_srv}/srv_model_yjs.c
    ${_srv}/srv_yproto.c
    ${_srv}/srv_yaware.c
    ${_srv}/srv_yws.c
    ${_srv}/srv_hocus.c
    ${_srv}/srv_presence.c
    ${_srv}/srv_cluster.c
    ${_srv}/srv_outbox.c
    ${_srv}/srv_metrics.c)
  target_include_directories(tandem_srv PUBLIC ${_srv})
  # Default --static: client-js/demo of this source tree, if it exists.
  target_compile_definitions(tandem_srv PRIVATE
    TD_SRV_SOURCE_DIR="${PROJECT_SOURCE_DIR}" _GNU_SOURCE)
  target_link_libraries(tandem_srv PUBLIC tandem_crdt tandem_yjs tandem_store websockets_shared
    PkgConfig::SODIUM PkgConfig::CJSON PkgConfig::TD_SRV_NATS ZLIB::ZLIB Threads::Threads ev m)
endif()
