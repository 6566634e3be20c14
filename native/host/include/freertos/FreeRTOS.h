// Host fake of ESP-IDF FreeRTOS (v5.5.5) FreeRTOS.h + portmacro.h + projdefs.h: the types,
// constants and macros used, exact. Tasks are pthreads (src/fake_freertos.c).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define portBASE_TYPE int
typedef portBASE_TYPE BaseType_t;
typedef unsigned portBASE_TYPE UBaseType_t;
typedef uint32_t TickType_t;
#define portMAX_DELAY (TickType_t)0xffffffffUL
#define configTICK_RATE_HZ 100
#define portTICK_PERIOD_MS ((TickType_t)1000 / configTICK_RATE_HZ)
#define configSTACK_DEPTH_TYPE uint32_t
#define PRIVILEGED_FUNCTION

typedef void (*TaskFunction_t)(void *);

#define pdFALSE ((BaseType_t)0)
#define pdTRUE ((BaseType_t)1)
#define pdPASS (pdTRUE)
#define pdFAIL (pdFALSE)
#define errQUEUE_EMPTY ((BaseType_t)0)
#define errQUEUE_FULL ((BaseType_t)0)
#define pdMS_TO_TICKS(xTimeInMs) ((TickType_t)(((TickType_t)(xTimeInMs) * (TickType_t)configTICK_RATE_HZ) / (TickType_t)1000U))
