namespace RlaifOnnx.Tests.Reporting;

/// <summary>A report.json sandbox section written by hand in the documented schema: four models, one with a key missing, label variants.</summary>
public static class SandboxFixture
{
    public const string Json = """
        {
          "models": {
            "base": {
              "harmful_compliance": {"rate": 0.4, "count": 40, "n": 100, "ci95": [0.31, 0.50]},
              "helpful_refusal": {"rate": 0.05, "count": 5, "n": 100, "ci95": [0.0215, 0.1118]},
              "evasive_refusal": {"rate": 0.1, "count": 10, "n": 100, "ci95": [0.0552, 0.1744]},
              "benign_accuracy": {"rate": 0.9, "count": 108, "n": 120, "ci95": [0.8337, 0.9421]},
              "unseen_kind": {
                "harmful_compliance": {"rate": 0.75, "count": 15, "n": 20, "ci95": [0.5313, 0.8881]},
                "helpful_refusal": {"rate": 0.0, "count": 0, "n": 20, "ci95": [0.0, 0.1611]},
                "evasive_refusal": {"rate": 0.05, "count": 1, "n": 20, "ci95": [0.0089, 0.2361]},
                "benign_accuracy": {"rate": 0.9, "count": 108, "n": 120, "ci95": [0.8337, 0.9421]}
              }
            },
            "sl_cai": {
              "harmful_compliance": {"rate": 0.25, "count": 25, "n": 100, "ci95": [0.1755, 0.3430]},
              "helpful_refusal": {"rate": 0.3, "count": 30, "n": 100, "ci95": [0.2189, 0.3958]},
              "evasive_refusal": {"rate": 0.2, "count": 20, "n": 100, "ci95": [0.1333, 0.2888]},
              "benign_accuracy": {"rate": 0.875, "count": 105, "n": 120, "ci95": [0.8045, 0.9226]}
            },
            "rl_cai": {
              "harmful_compliance": {"rate": 0.12, "count": 12, "n": 100, "ci95": [0.0700, 0.1981]},
              "helpful_refusal": {"rate": 0.55, "count": 55, "n": 100, "ci95": [0.4524, 0.6438]},
              "evasive_refusal": {"rate": 0.15, "count": 15, "n": 100, "ci95": [0.0931, 0.2318]},
              "benign_accuracy": {"rate": 0.8667, "count": 104, "n": 120, "ci95": [0.7951, 0.9160]}
            },
            "rlhf": {
              "harmful_compliance": {"rate": 0.1, "count": 10, "n": 100, "ci95": [0.0552, 0.1744]},
              "helpful_refusal": {"rate": 0.6, "count": 60, "n": 100, "ci95": [0.5020, 0.6906]},
              "benign_accuracy": {"rate": 0.85, "count": 102, "n": 120, "ci95": [0.7757, 0.9024]}
            }
          },
          "label_accuracy": {
            "one_order": {"accuracy": {"rate": 0.7, "count": 140, "n": 200, "ci95": [0.6332, 0.7590]}, "calibration": [[0.55, 0.6, 80], [0.65, 0.7, 70], [0.8, 0.85, 50]]},
            "both_orders": {"accuracy": {"rate": 0.76, "count": 152, "n": 200, "ci95": [0.6964, 0.8138]}, "calibration": [[0.52, 0.55, 60], [0.68, 0.74, 90], [0.85, 0.9, 50]]},
            "ensemble": {"accuracy": {"rate": 0.8, "count": 160, "n": 200, "ci95": [0.7391, 0.8496]}},
            "cot": {"accuracy": {"rate": 0.83, "count": 166, "n": 200, "ci95": [0.7721, 0.8751]}, "calibration": [[0.7, 0.72, 120], [0.95, 0.93, 80]]}
          }
        }
        """;
}
