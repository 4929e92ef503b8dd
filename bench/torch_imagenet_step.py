# PyTorch CPU anchor for bench/step.ts: median time of a plain SGD step of torchvision's ResNet-50 and
# MobileNetV2 (1000 classes) at the batch and image size the benchmark gives; prints
# "<net> batch<B> step <ms> ms" per net. Usage: torch_imagenet_step.py THREADS BATCH SIZE
import statistics, sys, time
import torch, torchvision

threads, batch, size = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(1)
for name, make in (('resnet50', torchvision.models.resnet50), ('mobilenetv2', torchvision.models.mobilenet_v2)):
    model = make(num_classes=1000)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 1000, (batch,))
    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    step(); step()  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    print(f'{name} batch{batch} step {statistics.median(times):.1f} ms', flush=True)
