// Host fake of ESP-IDF esp_log.h: ESP_LOGx(tag, format, ...) with printf checking; lines go
// to stderr when OTA_HOST_LOG is set in the environment (src/fake_system.c).
#pragma once
void fake_log(char level, const char *tag, const char *format, ...) __attribute__((format(printf, 3, 4)));
#define ESP_LOGE(tag, format, ...) fake_log('E', tag, format, ##__VA_ARGS__)
#define ESP_LOGW(tag, format, ...) fake_log('W', tag, format, ##__VA_ARGS__)
#define ESP_LOGI(tag, format, ...) fake_log('I', tag, format, ##__VA_ARGS__)
#define ESP_LOGD(tag, format, ...) fake_log('D', tag, format, ##__VA_ARGS__)
#define ESP_LOGV(tag, format, ...) fake_log('V', tag, format, ##__VA_ARGS__)
