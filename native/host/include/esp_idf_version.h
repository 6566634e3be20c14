// Host fake of ESP-IDF components/esp_common/include/esp_idf_version.h. The version the
// host build pretends to be comes from -DFAKE_IDF_VERSION_MINOR (5.5.5 by default; the
// Makefile also builds a 5.0.5 variant, the version firmware/build.sh uses).
#pragma once

#ifndef FAKE_IDF_VERSION_MINOR
#define FAKE_IDF_VERSION_MINOR 5
#endif

#define ESP_IDF_VERSION_MAJOR 5
#define ESP_IDF_VERSION_MINOR FAKE_IDF_VERSION_MINOR
#define ESP_IDF_VERSION_PATCH 5

#define ESP_IDF_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))
#define ESP_IDF_VERSION \
    ESP_IDF_VERSION_VAL(ESP_IDF_VERSION_MAJOR, ESP_IDF_VERSION_MINOR, ESP_IDF_VERSION_PATCH)
