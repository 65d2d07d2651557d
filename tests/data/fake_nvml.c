/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A fake NVML (libnvidia-ml) for the tests of the `nvml` budget source,
 * built by tests/common/fake_nvml.rs with `cc -shared -fPIC`. It exports
 * the calls the source makes through the nvml-wrapper crate, with NVML's
 * signatures and return codes, and answers from a text file named by
 * FAKE_NVML_STATE, read afresh at every call:
 *
 *   init=ok|fail|hang      nvmlInit_v2 succeeds, fails as without a driver,
 *                          or never returns (a wedged driver)
 *   gpu encoder=<percent> decoder=<percent>
 *                          a GPU; -1 = utilisation not supported
 *   session pid=<pid> ...  an NVENC session of the last GPU above
 *
 * Calls the source does not make are not exported: nvml-wrapper resolves
 * each symbol lazily and fails only the call whose symbol is missing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_UNKNOWN = 999,
};

/* nvmlEncoderSessionInfo_t */
typedef struct {
    unsigned int sessionId;
    unsigned int pid;
    unsigned int vgpuInstance;
    int codecType; /* 0 = H.264, 1 = HEVC */
    unsigned int hResolution;
    unsigned int vResolution;
    unsigned int averageFps;
    unsigned int averageLatency;
} nvmlEncoderSessionInfo_t;

#define MAX_GPUS 8
#define MAX_SESSIONS 64

struct fake_device {
    int encoder_percent;
    int decoder_percent;
    unsigned int sessions;
    unsigned int pids[MAX_SESSIONS];
};

struct fake_state {
    int init_ok;
    int init_hang;
    unsigned int gpus;
    struct fake_device devices[MAX_GPUS];
};

/* Handles are indices into this, refreshed from the file at each call. */
static struct fake_state state;
static int initialised;

static int read_state(void)
{
    const char *path = getenv("FAKE_NVML_STATE");
    char line[512];
    FILE *file;

    memset(&state, 0, sizeof state);
    state.init_ok = 1;
    if (!path || !(file = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, file)) {
        int enc, dec;
        unsigned int pid;
        if (strncmp(line, "init=fail", 9) == 0) {
            state.init_ok = 0;
        } else if (strncmp(line, "init=hang", 9) == 0) {
            state.init_hang = 1;
        } else if (sscanf(line, "gpu encoder=%d decoder=%d", &enc, &dec) == 2) {
            if (state.gpus < MAX_GPUS) {
                state.devices[state.gpus].encoder_percent = enc;
                state.devices[state.gpus].decoder_percent = dec;
                state.gpus++;
            }
        } else if (sscanf(line, "session pid=%u", &pid) == 1 && state.gpus > 0) {
            struct fake_device *d = &state.devices[state.gpus - 1];
            if (d->sessions < MAX_SESSIONS)
                d->pids[d->sessions++] = pid;
        }
    }
    fclose(file);
    return 0;
}

static struct fake_device *device_of(nvmlDevice_t device)
{
    unsigned long index = (unsigned long)device - 1;
    if (!initialised || read_state() != 0 || index >= state.gpus)
        return NULL;
    return &state.devices[index];
}

nvmlReturn_t nvmlInit_v2(void)
{
    if (read_state() != 0)
        return NVML_ERROR_UNKNOWN;
    while (state.init_hang)
        pause();
    if (!state.init_ok)
        return NVML_ERROR_DRIVER_NOT_LOADED;
    initialised = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
    initialised = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    (void)version;
    (void)length;
    return NVML_ERROR_NOT_SUPPORTED;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (read_state() != 0)
        return NVML_ERROR_UNKNOWN;
    *count = state.gpus;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (read_state() != 0 || index >= state.gpus)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = (nvmlDevice_t)(unsigned long)(index + 1);
    return NVML_SUCCESS;
}

static nvmlReturn_t utilization(int percent, unsigned int *value, unsigned int *period)
{
    if (percent < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *value = (unsigned int)percent;
    *period = 167000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *value,
                                             unsigned int *period)
{
    struct fake_device *d = device_of(device);
    return d ? utilization(d->encoder_percent, value, period) : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *value,
                                             unsigned int *period)
{
    struct fake_device *d = device_of(device);
    return d ? utilization(d->decoder_percent, value, period) : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetEncoderStats(nvmlDevice_t device, unsigned int *count,
                                       unsigned int *fps, unsigned int *latency)
{
    struct fake_device *d = device_of(device);
    if (!d)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = d->sessions;
    *fps = d->sessions ? 30 : 0;
    *latency = d->sessions ? 1000 : 0;
    return NVML_SUCCESS;
}

/* As NVML: a NULL array asks for the count; a short array is
 * INSUFFICIENT_SIZE with the count needed. */
nvmlReturn_t nvmlDeviceGetEncoderSessions(nvmlDevice_t device, unsigned int *count,
                                          nvmlEncoderSessionInfo_t *infos)
{
    struct fake_device *d = device_of(device);
    unsigned int i;
    if (!d || !count)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!infos) {
        *count = d->sessions;
        return NVML_SUCCESS;
    }
    if (*count < d->sessions) {
        *count = d->sessions;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (i = 0; i < d->sessions; i++) {
        memset(&infos[i], 0, sizeof infos[i]);
        infos[i].sessionId = i + 1;
        infos[i].pid = d->pids[i];
        infos[i].codecType = 0;
        infos[i].hResolution = 160;
        infos[i].vResolution = 120;
        infos[i].averageFps = 30;
    }
    *count = d->sessions;
    return NVML_SUCCESS;
}
