"""Where training ranks really run: samples, from the node's dockerd, which pod's Ray worker
container runs a Ray Train worker process, while a step trains. A rank is a process titled
`ray::RayTrainWorker...` (Ray names its actor processes after the actor class)."""
import subprocess
import threading
from collections import Counter

RANK_PROCESS = "RayTrainWorker"


class RankSampler:
    """Context manager: samples every `every` seconds until exit; `pods` is every pod a rank ran
    in, `most_in_one_pod` the most ranks seen in one pod at once."""

    def __init__(self, docker_env: dict, namespace: str, container: str = "ray-worker", every: float = 1.0):
        self._env, self._namespace, self._container, self._every = docker_env, namespace, container, every
        self.pods: set[str] = set()
        self.most_in_one_pod = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _docker(self, *argv: str) -> str:
        out = subprocess.run(["/usr/bin/docker", *argv], env=self._env, capture_output=True, text=True, timeout=30)
        return out.stdout if out.returncode == 0 else ""  # a container may end between the listing and `top`

    def _ranks_by_pod(self) -> Counter:
        listing = self._docker("ps", "--filter", f"label=io.kubernetes.pod.namespace={self._namespace}",
                               "--filter", f"label=io.kubernetes.container.name={self._container}",
                               "--format", '{{.ID}} {{.Label "io.kubernetes.pod.name"}}')
        ranks = Counter()
        for line in listing.splitlines():
            container, pod = line.split()
            rows = self._docker("top", container, "-eo", "pid,args").splitlines()[1:]  # dockerd needs the pid
            titles = [row.split(None, 1)[-1] for row in rows]
            ranks[pod] += sum(title.startswith(f"ray::{RANK_PROCESS}") for title in titles)
        return ranks

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            ranks = +self._ranks_by_pod()  # pods running at least one rank
            self.pods |= set(ranks)
            self.most_in_one_pod = max([self.most_in_one_pod, *ranks.values()])

    def __enter__(self) -> "RankSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
