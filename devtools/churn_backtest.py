"""The churn backtest on the demo data: seeds a scratch database on servers it starts (as `flask seed-demo`
does), scores, and prints the model's and the rule's precision, recall and lift at the same flagged count.

    python -m devtools.churn_backtest
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from devtools import services


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="churn-backtest-"))
    mongo_port, redis_port = services.free_port(), services.free_port()
    mongo = services.mongo(mongo_port, ":memory:", tmp / "mongo.log").start(timeout=120)
    redis = services.redis(redis_port, log_path=tmp / "redis.log").start()
    try:
        from console import create_app
        from console.blueprints.engagement.churn import latest_run
        from console.cli import prepare_database, seed_demo

        app = create_app({"SECRET_KEY": "scratch-" + "x" * 40, "TESTING": True,
                          "MONGODB_URI": f"mongodb://127.0.0.1:{mongo_port}/churn_backtest",
                          "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})
        with app.app_context():
            prepare_database()
            for line in seed_demo():
                print(line)
            backtest = latest_run()["model"]["backtest"]
        print(f"backtest as of {backtest['as_of']:%Y-%m-%d}: {backtest['scored']} members judged, "
              f"{backtest['went_silent']} went silent (base rate {backtest['base_rate']:.1%})")
        for name in ("model", "baseline"):
            figures = backtest[name]
            print(f"  {name:8}  flagged {figures['flagged']:>3}  caught {figures['true_positives']:>5}  "
                  f"precision {figures['precision']:.2f}  recall {figures['recall']:.2f}  lift {figures['lift']:.2f}")
        print("  the model beats the rule" if backtest["model_beats_baseline"] else "  the model does NOT beat it")
    finally:
        redis.stop()
        mongo.stop()


if __name__ == "__main__":
    main()
