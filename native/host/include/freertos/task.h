// Host fake of ESP-IDF FreeRTOS task.h / idf_additions.h (v5.5.5): xTaskCreate is the same
// static inline wrapper around xTaskCreatePinnedToCore (stack depth in bytes).
#pragma once
#include "freertos/FreeRTOS.h"

typedef struct tskTaskControlBlock *TaskHandle_t;
#define tskNO_AFFINITY ((BaseType_t)0x7FFFFFFF)

BaseType_t xTaskCreatePinnedToCore(TaskFunction_t pxTaskCode,
                                   const char *const pcName,
                                   const uint32_t ulStackDepth,
                                   void *const pvParameters,
                                   UBaseType_t uxPriority,
                                   TaskHandle_t *const pxCreatedTask,
                                   const BaseType_t xCoreID);

static inline __attribute__((always_inline)) BaseType_t xTaskCreate(TaskFunction_t pxTaskCode,
                                                                    const char *const pcName,
                                                                    const configSTACK_DEPTH_TYPE usStackDepth,
                                                                    void *const pvParameters,
                                                                    UBaseType_t uxPriority,
                                                                    TaskHandle_t *const pxCreatedTask) PRIVILEGED_FUNCTION {
    return xTaskCreatePinnedToCore(pxTaskCode, pcName, usStackDepth, pvParameters, uxPriority,
                                   pxCreatedTask, tskNO_AFFINITY);
}

void vTaskDelete(TaskHandle_t xTaskToDelete) PRIVILEGED_FUNCTION;
TaskHandle_t xTaskGetCurrentTaskHandle(void);
