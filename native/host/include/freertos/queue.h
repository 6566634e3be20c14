// Host fake of ESP-IDF FreeRTOS queue.h (v5.5.5): the same macros over the generic functions.
#pragma once
#include "freertos/FreeRTOS.h"

typedef struct QueueDefinition *QueueHandle_t;

#define queueSEND_TO_BACK ((BaseType_t)0)
#define queueSEND_TO_FRONT ((BaseType_t)1)
#define queueQUEUE_TYPE_BASE ((uint8_t)0U)

QueueHandle_t xQueueGenericCreate(const UBaseType_t uxQueueLength,
                                  const UBaseType_t uxItemSize,
                                  const uint8_t ucQueueType) PRIVILEGED_FUNCTION;
BaseType_t xQueueGenericSend(QueueHandle_t xQueue,
                             const void *const pvItemToQueue,
                             TickType_t xTicksToWait,
                             const BaseType_t xCopyPosition) PRIVILEGED_FUNCTION;
BaseType_t xQueueReceive(QueueHandle_t xQueue,
                         void *const pvBuffer,
                         TickType_t xTicksToWait) PRIVILEGED_FUNCTION;
void vQueueDelete(QueueHandle_t xQueue) PRIVILEGED_FUNCTION;

#define xQueueCreate(uxQueueLength, uxItemSize) \
    xQueueGenericCreate((uxQueueLength), (uxItemSize), (queueQUEUE_TYPE_BASE))
#define xQueueSend(xQueue, pvItemToQueue, xTicksToWait) \
    xQueueGenericSend((xQueue), (pvItemToQueue), (xTicksToWait), queueSEND_TO_BACK)
