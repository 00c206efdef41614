from common import *
from sklearn.linear_model import Ridge, LogisticRegression
from sklearn.model_selection import KFold
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
yg=np.array([gain(r) for r in gold]); 
report(dev,[len(r['prompt']) for r in dev],'length')
Fd=F([r['prompt'] for r in dev]); Fg=F([r['prompt'] for r in gold])
mu,sd=Fg.mean(0),Fg.std(0)+1e-6
def Xf(E_,F_): return np.hstack([E_,(F_-mu)/sd])
for a in [1,3,10,30]:
    m=Ridge(alpha=a).fit(Xf(Eg,Fg),yg); report(dev,m.predict(Xf(Ed,Fd)),f'ridge emb+f a={a}')
    m=Ridge(alpha=a).fit(Eg,yg); report(dev,m.predict(Ed),f'ridge emb a={a}')
# kNN gain mean
for k in [10,30,100]:
    S=Ed@Eg.T; idx=np.argsort(-S,1)[:,:k]; report(dev,yg[idx].mean(1),f'knn k={k}')
# logistic P(strong correct & weak wrong)
for C in [0.1,1]:
    y=(yg>0).astype(int); m=LogisticRegression(C=C,max_iter=2000).fit(Xf(Eg,Fg),y); report(dev,m.predict_proba(Xf(Ed,Fd))[:,1],f'logit gain>0 C={C}')
    y=np.array([r['weak_score']<1 for r in gold]).astype(int); m=LogisticRegression(C=C,max_iter=2000).fit(Xf(Eg,Fg),y); report(dev,m.predict_proba(Xf(Ed,Fd))[:,1],f'logit weakwrong C={C}')
