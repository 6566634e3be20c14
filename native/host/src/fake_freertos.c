// Host fake of the FreeRTOS calls the OTA updater makes (ESP-IDF v5.5.5 prototypes): tasks
// are pthreads, queues are a mutex and condition variables. Time-outs other than 0 and
// portMAX_DELAY wait in real time (1 tick = 10 ms). When the simulated device stops (power
// cut, esp_restart), every task thread leaves at its next FreeRTOS or flash call and
// fake_rtos_shutdown() joins them, as a reset ends every task.
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fake.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "freertos/queue.h"

struct QueueDefinition {
    UBaseType_t len, item_size, count, head;
    uint8_t *items;
    struct QueueDefinition *next_q;
};

struct tskTaskControlBlock {
    pthread_t thread;
    TaskFunction_t fn;
    void *arg;
    bool waiting;                    // blocked in xQueueReceive
    struct QueueDefinition *wait_q; // on this queue
    struct tskTaskControlBlock *next_t;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER; // one for every queue: simple and enough
static struct tskTaskControlBlock *g_tasks;
static struct QueueDefinition *g_queues;
static bool g_stopping;
static bool g_hold;
static __thread struct tskTaskControlBlock *t_self;

static void *task_main(void *arg) {
    struct tskTaskControlBlock *t = arg;
    t_self = t;
    t->fn(t->arg);
    fake_fatal("FreeRTOS task returned (a task must loop forever or call vTaskDelete)");
}

BaseType_t xTaskCreatePinnedToCore(TaskFunction_t pxTaskCode, const char *const pcName, const uint32_t ulStackDepth,
                                   void *const pvParameters, UBaseType_t uxPriority, TaskHandle_t *const pxCreatedTask,
                                   const BaseType_t xCoreID) {
    (void)pcName, (void)uxPriority, (void)xCoreID;
    fake_alive_check();
    if (ulStackDepth < 1024)
        fake_fatal("xTaskCreate: stack of %u bytes is too small", (unsigned)ulStackDepth);
    struct tskTaskControlBlock *t = calloc(1, sizeof(*t));
    t->fn = pxTaskCode;
    t->arg = pvParameters;
    pthread_mutex_lock(&g_mu);
    t->next_t = g_tasks;
    g_tasks = t;
    pthread_mutex_unlock(&g_mu);
    if (pthread_create(&t->thread, NULL, task_main, t) != 0)
        fake_fatal("pthread_create failed");
    if (pxCreatedTask)
        *pxCreatedTask = t;
    return pdPASS;
}

void fake_rtos_task_exit(void) {
    if (!t_self)
        fake_fatal("a task exit outside a task");
    pthread_exit(NULL);
}

void vTaskDelete(TaskHandle_t xTaskToDelete) {
    if (xTaskToDelete == NULL || xTaskToDelete == t_self)
        fake_rtos_task_exit();
    fake_fatal("vTaskDelete of another task is not modelled");
}

TaskHandle_t xTaskGetCurrentTaskHandle(void) {
    return t_self;
}

QueueHandle_t xQueueGenericCreate(const UBaseType_t uxQueueLength, const UBaseType_t uxItemSize,
                                  const uint8_t ucQueueType) {
    (void)ucQueueType;
    fake_alive_check();
    struct QueueDefinition *q = calloc(1, sizeof(*q));
    q->len = uxQueueLength;
    q->item_size = uxItemSize;
    q->items = calloc(uxQueueLength, uxItemSize);
    pthread_mutex_lock(&g_mu);
    q->next_q = g_queues;
    g_queues = q;
    pthread_mutex_unlock(&g_mu);
    return q;
}

void vQueueDelete(QueueHandle_t xQueue) {
    (void)xQueue; // freed by fake_rtos_shutdown
}

static bool wait_for(TickType_t ticks, const struct timespec *deadline) {
    if (ticks == portMAX_DELAY) {
        pthread_cond_wait(&g_cv, &g_mu);
        return true;
    }
    return pthread_cond_timedwait(&g_cv, &g_mu, deadline) != ETIMEDOUT;
}

static struct timespec deadline_after(TickType_t ticks) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ticks * portTICK_PERIOD_MS * 1000000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec += (long)(ns % 1000000000);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/** Called with g_mu held: a stopped device ends the calling task. */
static void stop_point(void) {
    if (g_stopping || fake_halted()) {
        pthread_mutex_unlock(&g_mu);
        fake_halt_thread();
    }
}

BaseType_t xQueueGenericSend(QueueHandle_t q, const void *const item, TickType_t ticks, const BaseType_t pos) {
    fake_alive_check();
    struct timespec deadline = deadline_after(ticks == portMAX_DELAY ? 0 : ticks);
    pthread_mutex_lock(&g_mu);
    for (;;) {
        stop_point();
        if (q->count < q->len)
            break;
        if (ticks == 0 || !wait_for(ticks, &deadline)) {
            pthread_mutex_unlock(&g_mu);
            return errQUEUE_FULL;
        }
    }
    UBaseType_t at = pos == queueSEND_TO_FRONT ? (q->head + q->len - 1) % q->len : (q->head + q->count) % q->len;
    memcpy(q->items + at * q->item_size, item, q->item_size);
    if (pos == queueSEND_TO_FRONT)
        q->head = at;
    q->count++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    return pdPASS;
}

BaseType_t xQueueReceive(QueueHandle_t q, void *const buf, TickType_t ticks) {
    fake_alive_check();
    struct timespec deadline = deadline_after(ticks == portMAX_DELAY ? 0 : ticks);
    pthread_mutex_lock(&g_mu);
    for (;;) {
        stop_point();
        bool held = g_hold && t_self;
        if (q->count > 0 && !held)
            break;
        if (ticks == 0) {
            pthread_mutex_unlock(&g_mu);
            return errQUEUE_EMPTY;
        }
        if (t_self) {
            t_self->waiting = true;
            t_self->wait_q = q;
        }
        bool woke = wait_for(ticks, &deadline);
        if (t_self)
            t_self->waiting = false;
        if (!woke) {
            pthread_mutex_unlock(&g_mu);
            return errQUEUE_EMPTY;
        }
    }
    memcpy(buf, q->items + q->head * q->item_size, q->item_size);
    q->head = (q->head + 1) % q->len;
    q->count--;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    return pdPASS;
}

bool fake_rtos_quiescent(void) {
    pthread_mutex_lock(&g_mu);
    bool quiet = true;
    // a task woken for an item it has not taken yet is not quiet
    for (struct tskTaskControlBlock *t = g_tasks; t && quiet; t = t->next_t)
        quiet = t->waiting && (g_hold || t->wait_q->count == 0);
    pthread_mutex_unlock(&g_mu);
    return quiet;
}

void fake_rtos_hold(bool hold) {
    pthread_mutex_lock(&g_mu);
    g_hold = hold;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

void fake_rtos_shutdown(void) {
    pthread_mutex_lock(&g_mu);
    g_stopping = true;
    g_hold = false;
    pthread_cond_broadcast(&g_cv);
    struct tskTaskControlBlock *tasks = g_tasks;
    g_tasks = NULL;
    pthread_mutex_unlock(&g_mu);
    while (tasks) {
        struct tskTaskControlBlock *t = tasks;
        tasks = t->next_t;
        pthread_join(t->thread, NULL);
        free(t);
    }
    pthread_mutex_lock(&g_mu);
    while (g_queues) {
        struct QueueDefinition *q = g_queues;
        g_queues = q->next_q;
        free(q->items);
        free(q);
    }
    g_stopping = false;
    pthread_mutex_unlock(&g_mu);
}
