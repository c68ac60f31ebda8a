{
  "targets": [
    {
      "target_name": "wedge_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/repair.cc",
        "native/src/probe.cc",
        "native/src/splice.cc",
        "native/src/addr.cc",
        "native/src/migrate.cc",
        "native/src/capture.cc",
        "native/src/limits.cc",
        "native/src/progress.cc",
        "native/src/handover.cc",
        "native/src/notify.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
